/*
 * debug_malloc.c - a small heap for running under glibc's debug malloc.
 *
 * Idea: glibc 2.34+ moved mtrace, mcheck and MALLOC_CHECK_ into a library of
 * their own, libc_malloc_debug.so.0, used with LD_PRELOAD.  It holds its own
 * copy of malloc.c (built without tcache), so the process has two main_arena
 * and two mp_: libc's and the library's.  Which one holds the heap depends on
 * the environment:
 *   LD_PRELOAD=libc_malloc_debug.so.0               libc's (the library passes
 *                                                   malloc on to libc)
 *   LD_PRELOAD=libc_malloc_debug.so.0 MALLOC_CHECK_=3  the library's own (libc's
 *                                                   main_arena stays untouched)
 * Built and run plainly, it is an ordinary small heap.
 *
 *   checkpoint 1: keep1, keep2 in use; gone freed (to a fastbin under
 *                 MALLOC_CHECK_, which has no tcache; else to the tcache);
 *                 big is mmapped.
 *
 * Prints: @ ptr NAME ADDR REQUEST, @ free gone.
 */
#include "sample.h"

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    void *keep1 = xmalloc(40);
    void *gone = xmalloc(100);
    void *keep2 = xmalloc(1000);
    void *big = xmalloc(300000);
    report_ptr("keep1", keep1, 40);
    report_ptr("gone", gone, 100);
    report_ptr("keep2", keep2, 1000);
    report_ptr("big", big, 300000);
    free(gone);
    report_free("gone");
    CHECKPOINT(1);
    return 0;
}
