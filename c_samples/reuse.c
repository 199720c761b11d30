/*
 * reuse.c - free and reuse: the tcache, then the fast bins, the unsorted bin
 * and the small bins.
 *
 * Idea: free puts a chunk in its thread's tcache bin (7 chunks a bin on
 * glibc < 2.43), and the next malloc of that size takes it straight back.
 * Once the tcache bin is full, a small chunk (0x30) goes to its fast bin and
 * a bigger one (0x100) to the unsorted bin; a large request later sorts the
 * unsorted bin into the small bins (and first consolidates the fast bins,
 * moving their chunks there too).  An in-use guard chunk follows every chunk
 * freed, so nothing merges.
 *
 * Checkpoints:
 *   1  N chunks of 0x30 (malloc(40)) and N of 0x100 (malloc(240)), guarded
 *   2  free(a0): tcache
 *   3  again = malloc(40): the same address, out of the tcache
 *   4  free every 0x30 chunk: 7 to the tcache, the rest to the fast bin
 *   5  free every 0x100 chunk: 7 to the tcache, the rest to the unsorted bin
 *   6  sorter = malloc(5000): the fast chunks and the unsorted ones end in
 *      small bins; sorter itself is cut from top
 */
#include "sample.h"

#define N 9

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    char *a[N], *b[N], *again, *sorter;
    char name[16];

    for (int i = 0; i < N; i++) {
        a[i] = xmalloc(40);
        snprintf(name, sizeof name, "a%d", i);
        report_ptr(name, a[i], 40);
        (void)xmalloc(24); /* guard */
    }
    for (int i = 0; i < N; i++) {
        b[i] = xmalloc(240);
        snprintf(name, sizeof name, "b%d", i);
        report_ptr(name, b[i], 240);
        (void)xmalloc(24); /* guard */
    }
    CHECKPOINT(1);

    free(a[0]);
    report_free("a0");
    CHECKPOINT(2);

    again = xmalloc(40);
    report_ptr("again", again, 40);
    printf("@ same_as_a0 %s\n", again == a[0] ? "yes" : "no");
    CHECKPOINT(3);

    for (int i = 0; i < N; i++) {
        free(a[i]);
        snprintf(name, sizeof name, "a%d", i);
        report_free(name);
    }
    CHECKPOINT(4);

    for (int i = 0; i < N; i++) {
        free(b[i]);
        snprintf(name, sizeof name, "b%d", i);
        report_free(name);
    }
    CHECKPOINT(5);

    sorter = xmalloc(5000);
    report_ptr("sorter", sorter, 5000);
    CHECKPOINT(6);
    return 0;
}
