/*
 * mmapped.c - large blocks that are mappings of their own, and glibc's
 * dynamic mmap threshold.
 *
 * Idea: a request of at least mp_.mmap_threshold (128 KiB at first) that top
 * cannot serve gets its own mmap: an "mmapped chunk" (IS_MMAPPED set) that
 * no arena or bin knows; glibc only counts them (mp_.n_mmaps).  Freeing one
 * bigger than the threshold raises the threshold to its size, so the next
 * request of that size comes from the heap instead.
 *
 *   checkpoint 1: four mmapped chunks: malloc(200000), malloc(300000),
 *                 malloc(1 MiB), and posix_memalign(64 KiB, 200000), whose
 *                 chunk sits inside its mapping after some slack (prev_size).
 *   free(p300k):  mmap_threshold becomes its chunk size (> 300000).
 *   checkpoint 2: malloc(300000) again: now from the main heap (top grows),
 *                 not mmapped; three mmapped chunks remain.
 *
 * Prints: @ ptr NAME ADDR REQUEST, @ free NAME, @ expect NAME mmapped|heap,
 * @ n_mmaps N (how many mmapped chunks the program holds at a checkpoint).
 */
#include "sample.h"

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    mi_open();
    void *small = xmalloc(100); /* a main heap exists from the start */
    void *a = xmalloc(200000);
    void *b = xmalloc(300000);
    void *c = xmalloc(1 << 20);
    void *d = NULL;

    if (posix_memalign(&d, 65536, 200000) != 0)
        return 1;
    report_ptr("small", small, 100);
    report_ptr("m200k", a, 200000);
    report_ptr("m300k", b, 300000);
    report_ptr("m1m", c, 1 << 20);
    report_ptr("aligned64k", d, 200000);
    report_expect("m200k", "mmapped");
    report_expect("m300k", "mmapped");
    report_expect("m1m", "mmapped");
    report_expect("aligned64k", "mmapped");
    printf("@ n_mmaps 4\n");
    CHECKPOINT(1);

    free(b); /* bigger than the threshold: raises mmap_threshold to its size */
    report_free("m300k");
    void *e = xmalloc(300000);
    report_ptr("back_on_heap", e, 300000);
    report_expect("back_on_heap", "heap");
    printf("@ n_mmaps 3\n");
    CHECKPOINT(2);
    return 0;
}
