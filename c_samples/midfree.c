/*
 * midfree.c - a heap caught while glibc is changing it.
 *
 * Idea: a program stopped (or attached to, or dumped to a core) while one of
 * its threads is inside free() sees a heap that is half updated.  _int_free
 * clears PREV_INUSE of the next chunk before it links the freed chunk into
 * the unsorted bin: between the two, the next chunk says "the chunk before me
 * is free" while no bin holds it.  The heap is healthy; glibc is simply in
 * the middle of the free.
 *
 * A worker thread (so the process is multi-threaded and glibc takes the
 * arena's mutex; the worker's first malloc gives it an arena of its own)
 * mallocs `a` (too big for the tcache and the fast bins, so free() takes the
 * merging path) and `guard` (in use, so `a` does not merge with anything),
 * stops in checkpoint(1), then frees `a`.  `watch_here` points at the size
 * field of guard's chunk: a debugger that watches it (`watch -l *watch_here`)
 * stops inside _int_free right after clear_inuse_bit_at_offset(), mid-free.
 * The main thread waits in pthread_join.  After the free the worker prints
 * "@ freed a" and the program exits 0: glibc finished the free on a
 * healthy heap.
 *
 * With the argument `damage` the worker clears guard's PREV_INUSE itself
 * before free(a): glibc then aborts inside _int_free with "double free or
 * corruption (!prev)" - the same picture, but real damage, and glibc says so.
 *
 * Prints @ tid worker LWP, @ ptr a ADDR 1280, @ ptr guard ADDR 40,
 * @ addr watch ADDR, @ checkpoint 1, then @ free a, @ done.
 */
#include "sample.h"

#include <sys/syscall.h>

size_t *volatile watch_here; /* guard's size field: what _int_free changes first */

static void *worker(void *arg)
{
    int damage = arg != NULL;
    char *a = xmalloc(1280);     /* chunk 0x510: above tcache's 1032 and the fast bins */
    char *guard = xmalloc(40);   /* in use: `a` has no free neighbour to merge with */
    memset(a, 'a', 1280);
    memset(guard, 'g', 40);
    printf("@ tid worker %ld\n", (long)syscall(SYS_gettid));
    report_ptr("a", a, 1280);
    report_ptr("guard", guard, 40);
    watch_here = (size_t *)guard - 1; /* guard's chunk + SIZE_SZ */
    report_addr("watch", (void *)watch_here);
    CHECKPOINT(1);
    if (damage)
        *watch_here &= ~(size_t)1; /* guard says `a` is free: free(a) aborts "(!prev)" */
    free(a);
    report_free("a");
    free(guard);
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    pthread_t thread;
    int damage = argc > 1 && strcmp(argv[1], "damage") == 0;

    if (start_thread(&thread, worker, damage ? (void *)1 : NULL) != 0)
        return 1;
    pthread_join(thread, NULL);
    printf("@ done\n");
    return 0;
}
