/*
 * big_request.c - a big request is a mapping of its own.
 *
 * Idea: a request of at least mp_.mmap_threshold (128 KiB at first) is not
 * cut from the heap: malloc asks the kernel for a mapping of its own (mmap)
 * and free gives it straight back (munmap).  No arena, no bin holds it.
 *
 * Checkpoints:
 *   1  small = malloc(10): the heap exists (so the next stage's system
 *      calls are the big request's own)
 *   2  big = malloc(256 KiB): an mmapped chunk
 *   3  free(big): unmapped
 */
#include "sample.h"

#define BIG_REQUEST (256 * 1024)

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    char *small, *big;

    small = xmalloc(10);
    report_ptr("small", small, 10);
    CHECKPOINT(1);

    big = xmalloc(BIG_REQUEST);
    report_ptr("big", big, BIG_REQUEST);
    CHECKPOINT(2);

    free(big);
    report_free("big");
    CHECKPOINT(3);

    (void)small;
    return 0;
}
