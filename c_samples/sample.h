/*
 * sample.h - shared helpers for the gdb_heap C sample programs.
 *
 * Every sample is a single .c file that includes this header first and is
 * built with:  gcc -g -O0 -Wall -Wextra -o build/NAME c_samples/NAME.c
 *
 * Every main() starts with setvbuf(stdout, NULL, _IONBF, 0): stdout then
 * never mallocs a stdio buffer (which would be a chunk in the heap), and
 * every line reaches a pipe before a breakpoint stops the process.
 *
 * What lives here:
 *   - checkpoint(): the function the tests and learners put a breakpoint on.
 *   - mi_open() / snapshot_malloc_info(): glibc's malloc_info() XML, written
 *     into the global buffer mi_buf, without touching the heap.
 *   - small printing helpers for the "@ ..." fact lines the tests grep.
 *
 * Output conventions (one fact per line, every line starts with "@ "):
 *   @ ptr NAME 0xADDR REQUEST   malloc(REQUEST) returned 0xADDR
 *   @ free NAME                 NAME was just freed
 *   @ expect NAME KIND          bin NAME should be in at the next checkpoint
 *                               (tcache, fast, unsorted, small, large, top);
 *                               written for glibc 2.36 behaviour, informative
 *   @ sbrk LABEL 0xADDR         sbrk(0), the program break, at that moment
 *   @ addr LABEL 0xADDR         where something lives
 *   @ freechunk NAME 0xCHUNK 0xSIZE  a free chunk (chunk address) of SIZE bytes
 *   @ checkpoint N              printed just before checkpoint(N) is called
 */
#ifndef GDB_HEAP_SAMPLE_H
#define GDB_HEAP_SAMPLE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* malloc_info, fopencookie, sbrk, MAP_ANONYMOUS */
#endif

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Breakpoint target.  Deliberately NOT static: gdb must find exactly one
 * symbol called "checkpoint".  Each sample is one translation unit, so
 * defining it in this header is fine.  noinline + the asm statement that
 * "uses" stage keep it a real, callable function even when optimised.
 * Outside gdb it does nothing.
 */
void checkpoint(int stage) __attribute__((noinline, used));
void checkpoint(int stage)
{
    __asm__ __volatile__("" : : "r"(stage) : "memory");
}

/* ------------------------------------------------------------------ */
/* malloc_info() snapshot                                              */
/* ------------------------------------------------------------------ */

/*
 * At every checkpoint mi_buf holds the NUL-terminated XML that glibc's
 * malloc_info(0, ...) produced just before the checkpoint, so a debugger
 * can compare its own reading of the heap with glibc's (x/s mi_buf).
 *
 * How the heap is kept unchanged by the snapshot:
 *   Opening any FILE mallocs (the FILE object itself), so the stream is
 *   opened ONCE, by mi_open(), before the sample's own allocations, and is
 *   made unbuffered right away, so stdio never mallocs a buffer for it.
 *   The stream is an fopencookie() stream whose write function, mi_write(),
 *   copies straight into mi_buf at our own position mi_pos and keeps the
 *   text NUL-terminated.  A snapshot is then only "mi_pos = 0" plus
 *   malloc_info(): on an unbuffered stream glibc's printf family formats
 *   into a buffer on the stack, so no malloc, calloc, realloc or free is
 *   called at all, and the heap (chunks, bins, tcache, main_arena, mp_)
 *   is exactly the same before and after.  Checked in gdb with breakpoints
 *   on the allocator entry points and a byte compare of the whole heap;
 *   see c_samples/README.md.
 *
 *   Why not fmemopen(): it works too, but it needs rewind() before each
 *   snapshot and glibc's rewind calls free(NULL) (harmless, yet a
 *   "break free" in gdb would stop there), it mallocs one chunk more
 *   (its cookie), and it only writes a terminating NUL when the text grows.
 *
 *   Text that does not fit in mi_buf is cut short, still NUL-terminated.
 */
char mi_buf[65536];
FILE *mi_file;
static size_t mi_pos; /* where the next byte of XML goes in mi_buf */

static ssize_t mi_write(void *cookie, const char *buf, size_t size)
{
    size_t room = sizeof mi_buf - 1 - mi_pos;
    size_t n = size < room ? size : room;

    (void)cookie;
    memcpy(mi_buf + mi_pos, buf, n);
    mi_pos += n;
    mi_buf[mi_pos] = '\0';
    return (ssize_t)size; /* report everything as written, even if cut */
}

static inline void mi_open(void)
{
    cookie_io_functions_t io = {NULL, mi_write, NULL, NULL};

    mi_file = fopencookie(NULL, "w", io);
    if (mi_file == NULL) {
        perror("fopencookie");
        exit(1);
    }
    setvbuf(mi_file, NULL, _IONBF, 0);
}

static inline void snapshot_malloc_info(void)
{
    if (mi_file == NULL)
        return; /* not opened yet: mi_buf stays as it was (empty) */
    mi_pos = 0;
    mi_buf[0] = '\0';
    malloc_info(0, mi_file);
}

/*
 * CHECKPOINT(n): snapshot malloc_info, announce, stop.  A macro (not a
 * function) so that checkpoint() is called directly from main and "up" in
 * gdb lands in main with the sample's variables.  Nothing between the
 * snapshot and checkpoint() allocates (stdout is unbuffered).
 */
#define CHECKPOINT(n)                                                  \
    do {                                                               \
        snapshot_malloc_info();                                        \
        printf("@ checkpoint %d\n", (n));                              \
        checkpoint(n);                                                 \
    } while (0)

/* ------------------------------------------------------------------ */
/* "@ " fact lines                                                     */
/* ------------------------------------------------------------------ */

static inline void report_ptr(const char *name, const void *p, size_t request)
{
    printf("@ ptr %s 0x%" PRIxPTR " %zu\n", name, (uintptr_t)p, request);
}

static inline void report_free(const char *name)
{
    printf("@ free %s\n", name);
}

static inline void report_expect(const char *name, const char *kind)
{
    printf("@ expect %s %s\n", name, kind);
}

static inline void report_addr(const char *label, const void *p)
{
    printf("@ addr %s 0x%" PRIxPTR "\n", label, (uintptr_t)p);
}

static inline void report_sbrk(const char *label)
{
    printf("@ sbrk %s 0x%" PRIxPTR "\n", label, (uintptr_t)sbrk(0));
}

/* malloc() that gives up loudly: the samples rely on every allocation. */
/* A thread whose stack has no guard page: glibc 2.42+ guards stacks with MADV_GUARD_INSTALL,
 * which gdb 13 cannot read, so its generate-core-file would save the sample's threads without
 * their stacks.  The samples never overflow a stack. */
static inline int start_thread(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setguardsize(&attr, 0);
    int err = pthread_create(thread, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return err;
}

static inline void *xmalloc(size_t request)
{
    void *p = malloc(request);
    if (p == NULL) {
        fprintf(stderr, "malloc(%zu) failed\n", request);
        exit(1);
    }
    return p;
}

#include <errno.h> /* last: the lines above are quoted by line number in docs/walkthrough.md */

/* A small deterministic generator (xorshift64*) for the benchmark samples:
 * the same seed gives the same requests. */
static inline uint64_t rng_seeded(uint64_t seed)
{
    /* spread the seed over the bits; the state must not be 0 */
    uint64_t state = seed * 0x9e3779b97f4a7c15ULL + 0x2545f4914f6cdd1dULL;
    return state ? state : 1;
}

static inline uint32_t rng_step(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545f4914f6cdd1dULL) >> 32);
}

/* A request: 70% of 8..128 bytes, then 129..1024 up to `mid_until` percent, the rest
 * 1025..4000. */
static inline uint32_t rng_request(uint64_t *state, uint32_t mid_until)
{
    uint32_t r = rng_step(state) % 100;

    if (r < 70)
        return 8 + rng_step(state) % 121;    /* 8..128 */
    if (r < mid_until)
        return 129 + rng_step(state) % 896;  /* 129..1024 */
    return 1025 + rng_step(state) % 2976;    /* 1025..4000 */
}

/* A decimal argument in lo..hi, or a message and exit(2). */
static inline unsigned long parse_arg(const char *prog, const char *s, const char *what,
                                      unsigned long lo, unsigned long hi)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: bad %s '%s' (expected %lu..%lu)\n",
                prog, what, s, lo, hi);
        exit(2);
    }
    return v;
}

/* PROG [COUNT [SEED]]: COUNT in 1..max (default *count), SEED (default *seed);
 * more arguments: the usage line and exit(2). */
static inline void parse_count_seed(int argc, char **argv, const char *prog, const char *what,
                                    unsigned long max, unsigned long *count, unsigned long *seed)
{
    if (argc > 3) {
        fprintf(stderr, "usage: %s [%s [SEED]]\n", prog, what);
        exit(2);
    }
    if (argc > 1)
        *count = parse_arg(prog, argv[1], what, 1, max);
    if (argc > 2)
        *seed = parse_arg(prog, argv[2], "SEED", 0, 0xffffffffUL);
}

#endif /* GDB_HEAP_SAMPLE_H */
