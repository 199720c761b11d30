/*
 * sizes.c - what a request becomes: request2size.
 *
 * Idea: malloc(n) gives a chunk of n + SIZE_SZ bytes rounded up to a
 * multiple of 16 (MALLOC_ALIGNMENT), at least 32 on x86-64 (MINSIZE): 0 to
 * 24 bytes all get a 32-byte chunk with 24 usable, 25 gets the next size
 * (48).  The chunk's size field sits just before the pointer malloc
 * returned; its low three bits are flags (every size is a multiple of 16,
 * so they are free).
 *
 * Checkpoint 1: p0 = malloc(0), p10 = malloc(10), p24 = malloc(24),
 * p25 = malloc(25), p1000 = malloc(1000), each printed.
 */
#include "sample.h"

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    char *p0 = xmalloc(0);
    char *p10 = xmalloc(10);
    char *p24 = xmalloc(24);
    char *p25 = xmalloc(25);
    char *p1000 = xmalloc(1000);

    report_ptr("p0", p0, 0);
    report_ptr("p10", p10, 10);
    report_ptr("p24", p24, 24);
    report_ptr("p25", p25, 25);
    report_ptr("p1000", p1000, 1000);
    CHECKPOINT(1);
    return 0;
}
