/*
 * arenas.c - several threads, each with its own arena and tcache, every
 * kind of bin filled in each.
 *
 * Idea: glibc gives each thread (past the first) an arena of its own, made
 * of mmapped "heaps" found through heap_info, and every thread its own
 * tcache.  Here the main thread and NWORKERS workers each run the same
 * pattern (fill_bins) in their own arena, so at the checkpoint every arena
 * has chunks in the fastbins, the unsorted, small and large bins, and every
 * thread's tcache holds chunks.  All threads are alive at the checkpoint:
 * the workers wait at a barrier until main returns from checkpoint(1).
 *
 * The pattern (chunk sizes for x86-64; requests are chunk size - 8; an
 * in-use guard chunk after every chunk that gets freed, so nothing merges):
 *   1. malloc everything first (so no free chunk is split by a later malloc):
 *      9 chunks of 0x100, 2 of 0x500, 1 of 0x600, 9 of 0x30.
 *   2. free the nine 0x100: 7 fill their tcache bin, 2 go to the unsorted
 *      bin (their small bin directly on glibc >= 2.41); free the two 0x500
 *      (too big for tcache: unsorted).
 *   3. sorter = malloc(4000): sorts the unsorted chunks into the small and
 *      large bins, then is cut from top.
 *   4. free the nine 0x30: 7 to tcache, 2 to the fastbin (after the sorter,
 *      whose large request would consolidate the fastbins).
 *   5. free the 0x600: it stays in the unsorted bin.
 * With argument "big", worker 1 first mallocs BIG_BYTES in chunks just
 * below the mmap threshold and keeps them: its arena outgrows its first
 * 64 MiB heap and gets a second one (the old one closed by fenceposts),
 * where its fill_bins chunks then go.  The main thread runs fill_bins after
 * creating the workers: pthread_create's own mallocs come from main_arena.
 *
 * Prints: @ ptr T_NAME ADDR REQUEST (T = 0 for main, 1..NWORKERS),
 * @ free T_NAME, @ lwp T LWP (each thread's kernel id, gdb's "LWP"),
 * @ big T N (how many big chunks thread T holds).  Build with -pthread.
 */
#include "sample.h"

#include <pthread.h>
#include <sys/syscall.h>

#define NWORKERS 3
#define BIG_CHUNK 120000 /* below the 128 KiB mmap threshold: from the arena */
#define BIG_BYTES (66u << 20) /* more than one 64 MiB heap */

static pthread_barrier_t meet;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static int big;

struct group {
    const char *name;
    size_t chunk; /* chunk size */
    int n;
};

/* Steps 1-5 above, in the calling thread's arena. */
static void fill_bins(int t)
{
    static const struct group groups[] = {
        {"small", 0x100, 9}, {"large", 0x500, 2}, {"unsorted", 0x600, 1}, {"fast", 0x30, 9}};
    void *p[4][9];
    char name[48];

    pthread_mutex_lock(&print_lock); /* one thread's lines together; malloc does not wait on it */
    printf("@ lwp %d %ld\n", t, (long)syscall(SYS_gettid));
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < groups[g].n; i++) {
            size_t request = groups[g].chunk - sizeof(size_t);
            p[g][i] = xmalloc(request);
            snprintf(name, sizeof name, "%d_%s%d", t, groups[g].name, i);
            report_ptr(name, p[g][i], request);
            snprintf(name, sizeof name, "%d_guard%d_%d", t, g, i);
            report_ptr(name, xmalloc(16), 16);
        }
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < groups[g].n; i++) {
            free(p[g][i]);
            snprintf(name, sizeof name, "%d_%s%d", t, groups[g].name, i);
            report_free(name);
        }
    snprintf(name, sizeof name, "%d_sorter", t);
    report_ptr(name, xmalloc(4000), 4000);
    for (int i = 0; i < groups[3].n; i++) {
        free(p[3][i]);
        snprintf(name, sizeof name, "%d_fast%d", t, i);
        report_free(name);
    }
    free(p[2][0]);
    snprintf(name, sizeof name, "%d_unsorted0", t);
    report_free(name);
    pthread_mutex_unlock(&print_lock);
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;

    if (big && t == 1) { /* first, so that no big malloc consolidates the fastbins */
        unsigned n = 0;
        for (size_t got = 0; got < BIG_BYTES; got += BIG_CHUNK, n++)
            xmalloc(BIG_CHUNK);
        pthread_mutex_lock(&print_lock);
        printf("@ big %d %u\n", t, n);
        pthread_mutex_unlock(&print_lock);
    }
    fill_bins(t);
    pthread_barrier_wait(&meet); /* all allocated and freed */
    pthread_barrier_wait(&meet); /* main is past its checkpoint */
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    pthread_t threads[NWORKERS];

    big = argc > 1 && strcmp(argv[1], "big") == 0;
    mi_open();
    pthread_barrier_init(&meet, NULL, NWORKERS + 1);
    for (int t = 0; t < NWORKERS; t++)
        if (pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)(t + 1)) != 0)
            return 1;
    fill_bins(0); /* after pthread_create, whose own mallocs would split these chunks */
    pthread_barrier_wait(&meet);
    CHECKPOINT(1);
    pthread_barrier_wait(&meet);
    for (int t = 0; t < NWORKERS; t++)
        pthread_join(threads[t], NULL);
    return 0;
}
