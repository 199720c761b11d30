/*
 * diff.c - mallocs and frees between checkpoints, for heap snapshot / heap diff.
 *
 * Idea: what one step of a program does to the heap is a short list: chunks
 * that appeared (malloc cut them from top), chunks that changed (free put
 * them in a bin; the chunk after a chunk freed into the unsorted bin loses
 * its P bit, PREV_INUSE) and chunks that disappeared (free merged them into
 * top).  Every step prints what it did, so a test compares the diff with it.
 *
 * Checkpoints:
 *   1  a = malloc(24), big = malloc(1100), guard = malloc(24), t = malloc(40):
 *      all in use, cut from top one after the other
 *   2  free(t): tcache[1] (chunk 0x30); free(big): past the tcache (chunk
 *      0x460 > 0x410), to the unsorted bin, and guard's P bit is cleared;
 *      n = malloc(5000): no bin holds a chunk that big, so it is cut from
 *      top, and on the way malloc sorts big out of the unsorted bin into
 *      its large bin (0x460 >= 0x400, the first large size on 64-bit)
 *   3  free(n): n is next to top, so it merges into top (it disappears)
 *      and top is back where it was at checkpoint 2's start
 */
#include "sample.h"

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    char *a, *big, *guard, *t, *n;

    /* Stage 1: four chunks in a row. */
    a = xmalloc(24);
    report_ptr("a", a, 24);
    big = xmalloc(1100);
    report_ptr("big", big, 1100);
    guard = xmalloc(24);
    report_ptr("guard", guard, 24);
    t = xmalloc(40);
    report_ptr("t", t, 40);
    CHECKPOINT(1);

    /* Stage 2: two frees and a malloc. */
    free(t);
    report_free("t");
    free(big);
    report_free("big");
    n = xmalloc(5000);
    report_ptr("n", n, 5000);
    CHECKPOINT(2);

    /* Stage 3: free the chunk next to top. */
    free(n);
    report_free("n");
    CHECKPOINT(3);

    (void)a;
    (void)guard;
    return 0;
}
