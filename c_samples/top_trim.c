/*
 * top_trim.c - the top chunk grows, then shrinks back.
 *
 * Idea: the top chunk is the free space at the end of the heap.  When a
 * request does not fit in it, glibc moves the program break up (brk) and
 * top grows.  When chunks next to top are freed they merge into top, and
 * once top is bigger than M_TRIM_THRESHOLD (128 KiB by default) glibc
 * gives the memory back by moving the break down again (systrim).
 *
 * Checkpoints:
 *   1  after the first small malloc(32): the heap exists, top is ~132 KiB
 *   2  after 20 x malloc(60000): each is below the mmap threshold (128 KiB),
 *      so all come from top and the break has moved up (@ sbrk grown)
 *   3  after freeing those 20 in reverse order: each one merges into top
 *      (too big for tcache and fastbins, and its upper neighbour is top),
 *      glibc trims top and the break is back down (@ sbrk trimmed)
 */
#include "sample.h"

#define NBIG 20
#define BIG_REQUEST 60000

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    char *small;
    char *big[NBIG];
    char names[NBIG][16];
    uintptr_t grown;

    report_sbrk("start"); /* no heap yet */
    mi_open();            /* before the sample's own mallocs */

    /* Stage 1: one small allocation. */
    small = xmalloc(32);
    strcpy(small, "small");
    report_ptr("small", small, 32);
    report_sbrk("after_small");
    CHECKPOINT(1);

    /* Stage 2: grow the heap. */
    for (int i = 0; i < NBIG; i++) {
        snprintf(names[i], sizeof names[i], "big%02d", i);
        big[i] = xmalloc(BIG_REQUEST);
        memset(big[i], 'b', BIG_REQUEST); /* really use the memory */
        report_ptr(names[i], big[i], BIG_REQUEST);
    }
    report_sbrk("grown");
    grown = (uintptr_t)sbrk(0);
    CHECKPOINT(2);

    /* Stage 3: free from the last (next to top) to the first, so each one
     * merges into top; top then exceeds the trim threshold and is trimmed. */
    for (int i = NBIG - 1; i >= 0; i--) {
        free(big[i]);
        report_free(names[i]);
    }
    report_sbrk("trimmed");
    /* how far the break moved back down (0 would mean no trim happened) */
    printf("@ trim_released %" PRIuPTR "\n", grown - (uintptr_t)sbrk(0));
    for (int i = 0; i < NBIG; i++)
        report_expect(names[i], "top");
    CHECKPOINT(3);

    free(small);
    return 0;
}
