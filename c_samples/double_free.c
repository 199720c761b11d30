/*
 * double_free.c - what malloc_usable_size says, then a double free.
 *
 * Idea: the $heap_* convenience functions answer what glibc itself would, and
 * `break free if $heap_is_free($rdi)` stops on a double free before glibc
 * aborts on it.
 *
 *   checkpoint 1: five chunks in use (tiny, fits tcache; small, freed into
 *                 tcache; big, freed past tcache's largest size into the
 *                 unsorted bin; guard, keeps big from merging with top;
 *                 mapped, an mmapped chunk).  Each pointer is printed with
 *                 malloc_usable_size(), the freed ones after their free too
 *                 (glibc only reads their headers).
 *   then, with the argument "twice": free(small) again: glibc aborts with
 *                 "free(): double free detected in tcache 2" unless a
 *                 debugger stops it first.  Without it the program ends here
 *                 (so that it runs to its end, as every sample does).
 *
 * Prints: @ ptr NAME ADDR REQUEST, @ usable NAME N (malloc_usable_size),
 * @ free NAME, @ double_free NAME just before the second free.
 */
#include "sample.h"

static void report_usable(const char *name, void *p)
{
    printf("@ usable %s %zu\n", name, malloc_usable_size(p));
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    mi_open();
    void *tiny = xmalloc(24);
    void *small = xmalloc(100);
    void *big = xmalloc(40000); /* above any tcache bin's size: the unsorted bin */
    void *guard = xmalloc(16);
    void *mapped = xmalloc(300000);

    report_ptr("tiny", tiny, 24);
    report_ptr("small", small, 100);
    report_ptr("big", big, 40000);
    report_ptr("guard", guard, 16);
    report_ptr("mapped", mapped, 300000);
    report_usable("tiny", tiny);
    report_usable("guard", guard);
    report_usable("mapped", mapped);
    /* Read back through volatile copies: gcc warns of a use after free otherwise. */
    void *volatile small_again = small, *volatile big_again = big;
    free(small);
    report_free("small");
    free(big);
    report_free("big");
    report_usable("small", small_again); /* in tcache: still "in use" for glibc */
    report_usable("big", big_again); /* in the unsorted bin: 0 */
    CHECKPOINT(1);

    if (argc < 2 || strcmp(argv[1], "twice") != 0)
        return 0;
    printf("@ double_free small\n");
    free(small_again);
    printf("@ survived\n");
    return 0;
}
