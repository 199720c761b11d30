/*
 * arenas.c - several threads, each with its own arena and tcache, every
 * kind of bin filled in each.
 *
 * Idea: glibc gives each thread (past the first) an arena of its own, made
 * of mmapped "heaps" found through heap_info, and every thread its own
 * tcache.  Here the main thread and NWORKERS workers each run the same
 * pattern (fill_bins) in their own arena, so at the checkpoint every arena
 * has chunks in the tcache, the fastbins (glibc < 2.43), the unsorted, small
 * and large bins.  All threads are alive at the checkpoint: the workers wait
 * at a barrier until main returns from checkpoint(1).
 *
 * One thread at a time: main creates every worker (pthread_create's own
 * mallocs come from main_arena), runs fill_bins, then lets the workers take
 * turns, 1 to NWORKERS.  So every run makes the same arenas, in the same
 * order, at the same addresses.
 *
 * The pattern (chunk sizes for x86-64; requests are chunk size - SIZE_SZ; an
 * in-use guard chunk after every chunk that gets freed, so nothing merges):
 *   1. malloc everything first (so no free chunk is split by a later malloc):
 *      FILL chunks of 0x100, 2 of 0x500, 1 of 0x600, FILL of 0x30.
 *   2. free the FILL 0x100: the tcache bin takes as many as it holds (7,
 *      16 from glibc 2.43), the rest go to the unsorted bin (their small
 *      bin directly on glibc >= 2.41); free the two 0x500 (too big for
 *      tcache: unsorted).
 *   3. sorter = malloc(4000): sorts the unsorted chunks into the small and
 *      large bins, then is cut from top.
 *   4. free the FILL 0x30: the tcache bin fills, the rest go to the fastbin
 *      (after the sorter, whose large request would consolidate the
 *      fastbins); with no fastbins (2.43+) to their small bin.
 *   5. free the 0x600: it stays in the unsorted bin.
 * FILL = 16 + 2: more than any glibc's tcache holds by default.
 *
 * With argument "big", worker 1 first mallocs chunks just below the mmap
 * threshold and keeps them until one lands in a second heap (heaps are
 * HEAP_MAX-aligned mappings): its arena has outgrown its first heap (64 MiB
 * on 64-bit, 1 MiB on 32-bit), which glibc closed with fenceposts, freeing
 * what was left of its top.  The worker then uses that leftover up (see
 * use_up_old_heap), so its fill_bins chunks all come from the new heap.
 *
 * Prints: @ ptr T_NAME ADDR REQUEST (T = 0 for main, 1..NWORKERS),
 * @ free T_NAME, @ lwp T LWP (each thread's kernel id, gdb's "LWP"),
 * @ big T N (how many big chunks thread T holds).  Build with -pthread.
 */
#include "sample.h"

#include <pthread.h>
#include <sys/syscall.h>

#define NWORKERS 3
#define FILL 18 /* per freed size: the tcache's 7 (16 from glibc 2.43), then bins */
#define BIG_CHUNK 120000 /* below the 128 KiB mmap threshold: from the arena */
/* glibc's HEAP_MAX_SIZE, 2 * DEFAULT_MMAP_THRESHOLD_MAX: what a thread arena's heaps are aligned to */
#define HEAP_MAX (sizeof(long) == 8 ? (size_t)64 << 20 : (size_t)1 << 20)

static pthread_barrier_t meet;
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond = PTHREAD_COND_INITIALIZER;
static int turn = 0; /* the worker whose turn it is to allocate; 0: not before all exist */
static int big;

struct group {
    const char *name;
    size_t chunk; /* chunk size */
    int n;
};

static const struct group groups[] = {
    {"small", 0x100, FILL}, {"large", 0x500, 2}, {"unsorted", 0x600, 1}, {"fast", 0x30, FILL}};
#define NGROUPS (int)(sizeof groups / sizeof groups[0])
#define SORTER 4000
#define GUARD 16

static uintptr_t heap_of(const void *p)
{
    return (uintptr_t)p & ~(uintptr_t)(HEAP_MAX - 1);
}

/* Steps 1-5 above, in the calling thread's arena. */
static void fill_bins(int t)
{
    void *p[NGROUPS][FILL];
    char name[48];

    printf("@ lwp %d %ld\n", t, (long)syscall(SYS_gettid));
    for (int g = 0; g < NGROUPS; g++)
        for (int i = 0; i < groups[g].n; i++) {
            size_t request = groups[g].chunk - sizeof(size_t);
            p[g][i] = xmalloc(request);
            snprintf(name, sizeof name, "%d_%s%d", t, groups[g].name, i);
            report_ptr(name, p[g][i], request);
            snprintf(name, sizeof name, "%d_guard%d_%d", t, g, i);
            report_ptr(name, xmalloc(GUARD), GUARD);
        }
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < groups[g].n; i++) {
            free(p[g][i]);
            snprintf(name, sizeof name, "%d_%s%d", t, groups[g].name, i);
            report_free(name);
        }
    snprintf(name, sizeof name, "%d_sorter", t);
    report_ptr(name, xmalloc(SORTER), SORTER);
    for (int i = 0; i < groups[3].n; i++) {
        free(p[3][i]);
        snprintf(name, sizeof name, "%d_fast%d", t, i);
        report_free(name);
    }
    free(p[2][0]);
    snprintf(name, sizeof name, "%d_unsorted0", t);
    report_free(name);
}

/*
 * The old heap's leftover top went to a bin, or to the tcache when small
 * enough: malloc every request size fill_bins makes, largest first, until
 * each comes from the new heap.  Those chunks are kept (not reported).
 */
static void use_up_old_heap(uintptr_t new_heap)
{
    size_t requests[NGROUPS + 2];
    int n = 0;

    requests[n++] = SORTER;
    for (int g = 0; g < NGROUPS; g++)
        requests[n++] = groups[g].chunk - sizeof(size_t);
    requests[n++] = GUARD;
    for (int i = 0; i < n; i++) /* largest first */
        for (int j = i + 1; j < n; j++)
            if (requests[j] > requests[i]) {
                size_t r = requests[i];
                requests[i] = requests[j];
                requests[j] = r;
            }
    for (int i = 0; i < n; i++)
        while (heap_of(xmalloc(requests[i])) != new_heap)
            ;
}

/* Worker 1 with "big": fill its first heap, so that the arena needs a second. */
static void outgrow_first_heap(int t)
{
    void *first = xmalloc(BIG_CHUNK), *p;
    unsigned n = 1;

    while (heap_of(p = xmalloc(BIG_CHUNK)) == heap_of(first))
        n++;
    n++;
    use_up_old_heap(heap_of(p));
    printf("@ big %d %u\n", t, n);
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;

    pthread_mutex_lock(&turn_lock);
    while (turn != t)
        pthread_cond_wait(&turn_cond, &turn_lock);
    pthread_mutex_unlock(&turn_lock);

    if (big && t == 1) /* first, so that no big malloc consolidates the fastbins */
        outgrow_first_heap(t);
    fill_bins(t);

    pthread_mutex_lock(&turn_lock);
    turn++;
    pthread_cond_broadcast(&turn_cond);
    pthread_mutex_unlock(&turn_lock);
    pthread_barrier_wait(&meet); /* all allocated and freed */
    pthread_barrier_wait(&meet); /* main is past its checkpoint */
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    pthread_t threads[NWORKERS];

    big = argc > 1 && strcmp(argv[1], "big") == 0;
    /* glibc's own arena limit depends on the cores and the glibc (2 per core on 32-bit, but
       it can go lower): one arena per thread on every machine */
    mallopt(M_ARENA_MAX, NWORKERS + 1);
    mi_open();
    pthread_barrier_init(&meet, NULL, NWORKERS + 1);
    for (int t = 0; t < NWORKERS; t++)
        if (start_thread(&threads[t], worker, (void *)(intptr_t)(t + 1)) != 0)
            return 1;
    fill_bins(0); /* after pthread_create, whose own mallocs would split these chunks */
    pthread_mutex_lock(&turn_lock);
    turn = 1;
    pthread_cond_broadcast(&turn_cond);
    pthread_mutex_unlock(&turn_lock);
    pthread_barrier_wait(&meet);
    CHECKPOINT(1);
    pthread_barrier_wait(&meet);
    for (int t = 0; t < NWORKERS; t++)
        pthread_join(threads[t], NULL);
    return 0;
}
