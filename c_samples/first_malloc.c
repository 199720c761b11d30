/*
 * first_malloc.c - the very first malloc of a program.
 *
 * Idea: before the first malloc there is no heap at all (main_arena is not
 * even initialised).  malloc(10) creates the heap with brk: glibc asks the
 * kernel for a good ~132 KiB at once, puts the tcache bookkeeping chunk and
 * our 10-byte chunk at its start and keeps the rest as the "top" chunk.
 * Later allocations that do not fit in top make the heap grow (brk moves
 * up).  A freed small chunk goes to the tcache and the next malloc of the
 * same size gets the very same address back.
 *
 * Checkpoints:
 *   1  no malloc yet: where code, data, bss and stack live; sbrk start
 *   2  p = malloc(10) holds "hello"; the heap now exists
 *   3  three malloc(100000) (below the 128 KiB mmap threshold) made the
 *      heap grow with brk
 *   4  free(p), then q = malloc(10): q == p, reused from the tcache
 */
#include "sample.h"

int global_data = 42; /* initialised global: lives in .data */
int global_bss;       /* zero global: lives in .bss */

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    int stack_local = 7; /* lives on the stack */
    char *p, *q;
    char *big[3];
    static const char *big_names[3] = {"big1", "big2", "big3"};
    const size_t big_request = 100000;

    /* Stage 1: nothing malloc'd yet. */
    report_addr("main", (const void *)(uintptr_t)&main);
    report_addr("global_data", &global_data);
    report_addr("global_bss", &global_bss);
    report_addr("stack", &stack_local);
    report_sbrk("start");
    /* mi_buf stays empty here: opening its stream would malloc. */
    CHECKPOINT(1);

    /* Stage 2: the learner's first malloc. */
    p = malloc(10);
    if (p == NULL)
        return 1;
    report_ptr("p", p, 10);
    report_sbrk("after_first_malloc");
    strcpy(p, "hello");
    /* The malloc_info stream is opened only now, so that malloc(10) above
     * is the program's first malloc.  Its FILE object becomes the chunk
     * right after p. */
    mi_open();
    CHECKPOINT(2);

    /* Stage 3: grow the heap.  Each request is below the mmap threshold
     * (128 KiB), so it is carved from top; together they need more than
     * the first ~132 KiB, so glibc moves the program break up. */
    for (int i = 0; i < 3; i++) {
        big[i] = malloc(big_request);
        if (big[i] == NULL)
            return 1;
        big[i][0] = 'x';
        report_ptr(big_names[i], big[i], big_request);
    }
    report_sbrk("after_growth");
    CHECKPOINT(3);

    /* Stage 4: free and reuse. */
    free(p);
    report_free("p");
    q = malloc(10);
    if (q == NULL)
        return 1;
    report_ptr("q", q, 10);
    printf("@ same_as_p %s\n", q == p ? "yes" : "no");
    CHECKPOINT(4);

    /* big[] stays allocated until the process exits. */
    (void)big;
    (void)q;
    return 0;
}
