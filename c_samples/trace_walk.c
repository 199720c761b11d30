/*
 * trace_walk.c - one malloc or free per step, for `heap trace`: each step is a
 * path of glibc's allocator, and a checkpoint after every step lets a debugger
 * read glibc's own state between two calls.
 *
 * Steps (the checkpoint number is the step just done; 0: nothing yet):
 *   1  a = malloc(24): the program's first malloc; the heap is made with brk
 *      and a is cut from top (after the tcache's own chunk)
 *   2  free(a): into tcache[0]
 *   3  b = malloc(24): b == a, taken back from tcache[0]
 *   4  f[0..7] = malloc(24) (8 calls), then free(f[0..7]) (8 calls): the first
 *      seven fill tcache[0], the eighth goes to fast[0] (glibc 2.43 has no
 *      fast bins: to the unsorted bin)
 *   5  u = malloc(0x500), g = malloc(40), v = malloc(0x500), w = malloc(0x500),
 *      h = malloc(40), t = malloc(0x600): all cut from top, in this order
 *   6  free(u): 0x510 bytes is past the tcache: into the unsorted bin
 *   7  free(v): into the unsorted bin;  8  free(w): merged with v (w's
 *      previous chunk, free) into one chunk in the unsorted bin
 *   9  free(t): t is the last chunk before top: merged into top
 *   10 big = malloc(200000): at or above the mmap threshold: a mapping of its own (mmap)
 *   11 free(big): munmap
 *
 * Every pointer is printed ("@ ptr NAME 0xADDR REQUEST"), every free too ("@ free NAME").
 * No stdio stream is opened (that would malloc): stdout is unbuffered.
 */
#include "sample.h"

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    char *f[8];
    static const char *f_names[8] = {"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"};

    CHECKPOINT(0);
    char *a = xmalloc(24);
    report_ptr("a", a, 24);
    CHECKPOINT(1);
    free(a);
    report_free("a");
    CHECKPOINT(2);
    char *b = xmalloc(24);
    report_ptr("b", b, 24);
    CHECKPOINT(3);
    for (int i = 0; i < 8; i++) {
        f[i] = xmalloc(24);
        report_ptr(f_names[i], f[i], 24);
    }
    for (int i = 0; i < 8; i++) {
        free(f[i]);
        report_free(f_names[i]);
    }
    CHECKPOINT(4);
    char *u = xmalloc(0x500), *g = xmalloc(40), *v = xmalloc(0x500), *w = xmalloc(0x500);
    char *h = xmalloc(40), *t = xmalloc(0x600);
    report_ptr("u", u, 0x500);
    report_ptr("g", g, 40);
    report_ptr("v", v, 0x500);
    report_ptr("w", w, 0x500);
    report_ptr("h", h, 40);
    report_ptr("t", t, 0x600);
    CHECKPOINT(5);
    free(u);
    report_free("u");
    CHECKPOINT(6);
    free(v);
    report_free("v");
    CHECKPOINT(7);
    free(w);
    report_free("w");
    CHECKPOINT(8);
    free(t);
    report_free("t");
    CHECKPOINT(9);
    char *big = xmalloc(200000);
    report_ptr("big", big, 200000);
    CHECKPOINT(10);
    free(big);
    report_free("big");
    CHECKPOINT(11);
    free(b);
    free(g);
    free(h);
    return 0;
}
