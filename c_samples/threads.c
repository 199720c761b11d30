/*
 * threads.c - every thread has its own tcache.
 *
 * Idea: glibc gives each thread a tcache of its own (and, past the first, an
 * arena of its own).  A chunk freed by a thread goes to *that thread's*
 * tcache, whatever the arena it came from: it is free, though only that
 * thread's mallocs can reuse it.
 *
 * Three worker threads, one after the other, once all three exist (so their
 * stacks and arenas are mapped in the same order, at the same addresses, in
 * every run), each malloc NPER chunks
 * of growing sizes and free every other one (into their own tcache), then
 * all threads meet at a barrier while the main thread stops in
 * checkpoint(1); the workers wait, alive, until it returns.
 *
 * Prints, per worker T (1..3): @ tid tT LWP (its thread id, as gdb's
 * `info threads` shows it), @ ptr tT_I ADDR REQUEST for every chunk and
 * @ free tT_I for the freed ones.  Build with -pthread.
 */
#include "sample.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NWORKERS 3
#define NPER 12

static pthread_barrier_t meet;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond = PTHREAD_COND_INITIALIZER;
static int turn = 0; /* the worker whose turn it is to allocate; 0: not before all exist */

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char *p[NPER];
    char name[32];

    pthread_mutex_lock(&turn_lock);
    while (turn != t)
        pthread_cond_wait(&turn_cond, &turn_lock);
    pthread_mutex_unlock(&turn_lock);

    for (int i = 0; i < NPER; i++)
        p[i] = xmalloc((size_t)(24 + 40 * i));
    pthread_mutex_lock(&print_lock);
    printf("@ tid t%d %ld\n", t, (long)syscall(SYS_gettid));
    for (int i = 0; i < NPER; i++) {
        snprintf(name, sizeof name, "t%d_%d", t, i);
        report_ptr(name, p[i], (size_t)(24 + 40 * i));
    }
    for (int i = 0; i < NPER; i += 2) {
        free(p[i]);
        snprintf(name, sizeof name, "t%d_%d", t, i);
        report_free(name);
    }
    pthread_mutex_unlock(&print_lock);

    pthread_mutex_lock(&turn_lock);
    turn++;
    pthread_cond_broadcast(&turn_cond);
    pthread_mutex_unlock(&turn_lock);
    pthread_barrier_wait(&meet); /* all allocated and freed */
    pthread_barrier_wait(&meet); /* main is past its checkpoint */
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    pthread_t threads[NWORKERS];

    pthread_barrier_init(&meet, NULL, NWORKERS + 1);
    for (int t = 0; t < NWORKERS; t++)
        if (start_thread(&threads[t], worker, (void *)(intptr_t)(t + 1)) != 0)
            return 1;
    pthread_mutex_lock(&turn_lock);
    turn = 1;
    pthread_cond_broadcast(&turn_cond);
    pthread_mutex_unlock(&turn_lock);
    pthread_barrier_wait(&meet);
    printf("@ checkpoint 1\n");
    checkpoint(1);
    pthread_barrier_wait(&meet);
    for (int t = 0; t < NWORKERS; t++)
        pthread_join(threads[t], NULL);
    return 0;
}
