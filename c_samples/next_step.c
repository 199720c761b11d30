/*
 * next_step.c - one free() or malloc() at a time, set up, stopped before, then really done.
 *
 * usage: next_step STAGE     (one situation per run)
 *
 * Each stage builds a situation, then stops at checkpoint 1 with the global
 * `target` (the pointer free() will get) or `request` (the size malloc()
 * will get) set; a debugger asks its prediction there.  Then the program
 * really makes that one call and prints what glibc did:
 *   "@ result 0xPTR"   what malloc/calloc returned (free: "@ result 0x0")
 *   "@ sbrk before/after 0xADDR"  the program break around the call
 * and stops at checkpoint 2, where the bins and top can be read through
 * glibc's debug info.  A call that glibc aborts prints glibc's message on
 * stderr and raises SIGABRT instead.
 *
 * Sizes follow SIZE_SZ (S = sizeof(size_t)) so every stage means the same on
 * x86-64 and i386: SMALL is a MINSIZE chunk (tcache[0], fast[0]); MID a chunk
 * of 0x100 (a tcache and small bin size, past the fast bins); LARGE 0x500
 * (past the tcache, a large bin).  The tcache holds 7 chunks per bin up to
 * glibc 2.42 and 16 from 2.43 (which also has no fast bins).
 *
 * Stages:
 *   free_tcache free_fast free_small free_unsorted free_merge_back
 *   free_merge_forward free_merge_both free_into_top free_trim free_munmap
 *   double_free_tcache double_free_fast free_misaligned free_top
 *   free_fake_tcache (a fake chunk of 8 * S in .bss, freed: "house of spirit")
 *   malloc_tcache malloc_fast malloc_small malloc_unsorted_exact
 *   malloc_sort_then_top malloc_large_split malloc_binmap_small
 *   malloc_last_remainder malloc_top malloc_mmap malloc_consolidate
 *   malloc_consolidate_many (CONSOLIDATE_GROUPS groups of fast chunks, see
 *     consolidate_many: tens of thousands of fast chunks for one consolidation)
 *   malloc_unsorted_to_tcache calloc_skips_tcache
 *   realloc_shrink realloc_into_top realloc_over_next realloc_move
 *     (realloc(target, request))
 */
#include "sample.h"

#include <gnu/libc-version.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free" /* double_free: the point of the stage */
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#endif

#define S sizeof(size_t)
#define SMALL (3 * S)        /* chunk MINSIZE */
#define MID (0x100 - S)      /* chunk 0x100 */
#define LARGE (0x500 - S)    /* chunk 0x500 */
#define BIG 0x1000           /* a large request nothing free serves */
#define FILL_MAX 16

/* A fake chunk outside the heap, placed like a real one: its user pointer
 * FAKE_MEM 16-byte aligned, its header 2 * SIZE_SZ before that. */
size_t fake[16] __attribute__((aligned(16)));
#define FAKE_MEM ((void *)((char *)fake + 16))
void *target;    /* the pointer free() gets after checkpoint 1 */
size_t request;  /* the size malloc() gets after checkpoint 1 */

static int glibc_at_least(int want_major, int want_minor)
{
    int major = 0, minor = 0;

    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    return major > want_major || (major == want_major && minor >= want_minor);
}

static int tcache_count(void)
{
    return glibc_at_least(2, 43) ? 16 : 7;
}

static int is(const char *stage, const char *name)
{
    return strcmp(stage, name) == 0;
}

/* An in-use chunk of 0x30 (x86-64) / 0x20 (i386): keeps neighbours apart. */
static void *guard(void)
{
    return xmalloc(5 * S);
}

/* Fills the tcache bin of this request's size (each chunk with a guard, so
 * nothing merges): the next free of that size goes past the tcache. */
static void fill_tcache(size_t req)
{
    void *p[FILL_MAX];
    int n = tcache_count();

    for (int i = 0; i < n; i++) {
        p[i] = xmalloc(req);
        guard();
    }
    for (int i = 0; i < n; i++)
        free(p[i]);
}

/* Takes every chunk out of the tcache bin of this request's size. */
static void empty_tcache(size_t req)
{
    for (int i = 0; i < tcache_count(); i++)
        (void)xmalloc(req);
}

/* malloc_consolidate_many: groups of chunks, four kinds in turn (F1 < F2 < F3 < F4
 * are fast requests, G an in-use guard of F2's size):
 *   0: [F1][F3][G]  both freed: F1's bin comes first, F3 merges backwards into it
 *   1: [F3][F1][G]  both freed: F1 first, then F3 merges forwards over it
 *   2: [F2][G][F4][G]  both freed, nothing to merge
 *   3: [LARGE][F1][G]  LARGE freed (past the tcache: the unsorted bin), then F1
 *      merges backwards into it, out of the unsorted bin
 * and a last F1 chunk beside top, freed last: consolidation merges it into top.
 * The first tcache_count() frees of each size fill the tcache; every later one
 * goes to a fast bin.  The request (CONSOLIDATE_REQUEST) is larger than any
 * chunk then free: after sorting MAX_ITERS unsorted chunks (the oldest: the
 * merges into LARGE, F2's, then merged F1 + F3 pairs), malloc cuts it from top,
 * which starts at the last F1 chunk. */
#define CONSOLIDATE_GROUPS 14000
#define F1 (3 * S)
#define F2 (5 * S)
#define F3 (7 * S)
#define F4 (9 * S)
#define CONSOLIDATE_REQUEST (LARGE + 0x100)

static void consolidate_many(void)
{
    static void *chunks[CONSOLIDATE_GROUPS][2];
    static void *big[CONSOLIDATE_GROUPS];
    size_t fast = 0;
    void *last;

    for (int g = 0; g < CONSOLIDATE_GROUPS; g++) {
        switch (g % 4) {
        case 0:
            chunks[g][0] = xmalloc(F1);
            chunks[g][1] = xmalloc(F3);
            break;
        case 1:
            chunks[g][0] = xmalloc(F3);
            chunks[g][1] = xmalloc(F1);
            break;
        case 2:
            chunks[g][0] = xmalloc(F2);
            guard();
            chunks[g][1] = xmalloc(F4);
            break;
        default:
            big[g] = xmalloc(LARGE);
            chunks[g][0] = xmalloc(F1);
            chunks[g][1] = NULL;
        }
        guard();
    }
    last = xmalloc(F1);
    for (int g = 3; g < CONSOLIDATE_GROUPS; g += 4)
        free(big[g]);
    for (int g = 0; g < CONSOLIDATE_GROUPS; g++)
        for (int k = 0; k < 2; k++)
            if (chunks[g][k] != NULL) {
                free(chunks[g][k]);
                fast++;
            }
    free(last);
    report_ptr("last", last, F1);
    printf("@ freed_fast %zu\n", fast + 1); /* the tcache took 4 * tcache_count() of them */
}

static void *named(const char *name, size_t req)
{
    void *p = xmalloc(req);

    report_ptr(name, p, req);
    return p;
}

static void do_free(void)
{
    report_sbrk("before");
    free(target);
    report_sbrk("after");
    printf("@ result 0x0\n");
}

static void do_malloc(int calloc_it, int realloc_it)
{
    void *p;

    report_sbrk("before");
    p = realloc_it ? realloc(target, request) : calloc_it ? calloc(1, request) : malloc(request);
    report_sbrk("after");
    printf("@ result 0x%" PRIxPTR "\n", (uintptr_t)p);
    if (p != NULL)
        printf("@ size_field 0x%zx\n", ((size_t *)p)[-1]);
}

int main(int argc, char **argv)
{
    const char *stage = argc > 1 ? argv[1] : "";
    void *a, *b, *c, *p[FILL_MAX];
    int is_malloc = 0, is_calloc = 0, is_realloc = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    printf("@ size_t %zu\n", S);
    free(xmalloc(SMALL)); /* the tcache exists from here (2.43 makes it on the first free) */
    (void)xmalloc(SMALL); /* and the chunk is back in use */

    if (is(stage, "free_tcache")) {
        target = named("a", SMALL);
        guard();
    } else if (is(stage, "free_fast")) {
        target = named("a", SMALL);
        guard();
        fill_tcache(SMALL);
    } else if (is(stage, "free_small")) {
        target = named("a", MID);
        guard();
        fill_tcache(MID);
    } else if (is(stage, "free_unsorted")) {
        target = named("a", LARGE);
        guard();
    } else if (is(stage, "free_merge_back")) {
        a = named("a", LARGE);
        target = named("b", LARGE);
        guard();
        free(a);
    } else if (is(stage, "free_merge_forward")) {
        target = named("a", LARGE);
        b = named("b", LARGE);
        guard();
        free(b);
    } else if (is(stage, "free_merge_both")) {
        a = named("a", LARGE);
        target = named("b", LARGE);
        c = named("c", LARGE);
        guard();
        free(a);
        free(c);
    } else if (is(stage, "free_into_top")) {
        target = named("a", LARGE);
    } else if (is(stage, "free_trim")) {
        a = named("a", 0xF000);
        b = named("b", 0xF000);
        target = named("c", 0xF000);
        free(a);
        free(b);
    } else if (is(stage, "free_munmap")) {
        target = named("a", 0x40000);
    } else if (is(stage, "double_free_tcache")) {
        target = named("a", SMALL);
        guard();
        free(target);
    } else if (is(stage, "double_free_fast")) {
        target = named("a", SMALL);
        guard();
        fill_tcache(SMALL);
        free(target);
    } else if (is(stage, "free_misaligned")) {
        a = named("a", SMALL);
        guard();
        target = (char *)a + S;
    } else if (is(stage, "free_top")) {
        a = named("a", SMALL);
        target = (char *)a + (((size_t *)a)[-1] & ~(size_t)7); /* top's user pointer */
    } else if (is(stage, "free_fake_tcache")) {
        ((size_t *)FAKE_MEM)[-1] = 8 * S | 1; /* its size field: 0x40 (x86-64), 0x20 (i386) */
        report_addr("fake", (char *)FAKE_MEM - 2 * S);
        target = FAKE_MEM;
    } else if (is(stage, "malloc_tcache")) {
        free(named("a", SMALL));
        guard();
        request = SMALL;
        is_malloc = 1;
    } else if (is(stage, "malloc_fast")) {
        for (int i = 0; i < 3; i++) {
            p[i] = xmalloc(SMALL);
            guard();
        }
        fill_tcache(SMALL);
        for (int i = 0; i < 3; i++)
            free(p[i]); /* fast[0] (2.43: small bin) */
        empty_tcache(SMALL);
        request = SMALL;
        is_malloc = 1;
    } else if (is(stage, "malloc_small")) {
        for (int i = 0; i < 3; i++) {
            p[i] = xmalloc(MID);
            guard();
        }
        fill_tcache(MID);
        for (int i = 0; i < 3; i++)
            free(p[i]); /* unsorted (2.41+: small bin) */
        (void)xmalloc(BIG); /* sorts them into their small bin */
        empty_tcache(MID);
        request = MID;
        is_malloc = 1;
    } else if (is(stage, "malloc_unsorted_exact")) {
        free(named("a", LARGE));
        guard();
        request = LARGE;
        is_malloc = 1;
    } else if (is(stage, "malloc_sort_then_top")) {
        free(named("a", LARGE));
        guard();
        request = BIG;
        is_malloc = 1;
    } else if (is(stage, "malloc_large_split")) {
        free(named("a", 0x800 - S));
        guard();
        (void)xmalloc(BIG); /* a: to its large bin */
        request = LARGE;
        is_malloc = 1;
    } else if (is(stage, "malloc_binmap_small")) {
        free(named("a", LARGE));
        guard();
        (void)xmalloc(BIG);
        request = MID;
        is_malloc = 1;
    } else if (is(stage, "malloc_last_remainder")) {
        free(named("a", LARGE));
        guard();
        (void)xmalloc(BIG);
        (void)xmalloc(MID); /* splits a: its remainder is the last remainder */
        request = MID; /* tcache[MID] is empty: the remainder serves it */
        is_malloc = 1;
    } else if (is(stage, "malloc_top")) {
        request = BIG;
        is_malloc = 1;
    } else if (is(stage, "malloc_mmap")) {
        request = 0x40000;
        is_malloc = 1;
    } else if (is(stage, "malloc_consolidate")) {
        for (int i = 0; i < 3; i++)
            p[i] = xmalloc(SMALL); /* side by side: consolidation merges them */
        guard();
        fill_tcache(SMALL);
        for (int i = 0; i < 3; i++)
            free(p[i]);
        request = LARGE;
        is_malloc = 1;
    } else if (is(stage, "malloc_consolidate_many")) {
        consolidate_many();
        request = CONSOLIDATE_REQUEST;
        is_malloc = 1;
    } else if (is(stage, "malloc_unsorted_to_tcache")) {
        for (int i = 0; i < 3; i++) {
            p[i] = xmalloc(MID);
            guard();
        }
        fill_tcache(MID);
        for (int i = 0; i < 3; i++)
            free(p[i]);
        empty_tcache(MID);
        request = MID;
        is_malloc = 1;
    } else if (is(stage, "calloc_skips_tcache")) {
        free(named("a", MID));
        guard();
        request = MID;
        is_calloc = 1;
    } else if (is(stage, "realloc_shrink")) {
        target = named("a", LARGE);
        guard();
        request = MID; /* the rest, 0x400 (i386: 0x400), is freed */
        is_realloc = 1;
    } else if (is(stage, "realloc_into_top")) {
        target = named("a", MID);
        request = LARGE;
        is_realloc = 1;
    } else if (is(stage, "realloc_over_next")) {
        target = named("a", LARGE);
        b = named("b", LARGE);
        guard();
        free(b); /* the unsorted bin */
        request = LARGE + 0x300;
        is_realloc = 1;
    } else if (is(stage, "realloc_move")) {
        target = named("a", LARGE);
        guard();
        request = BIG;
        is_realloc = 1;
    } else {
        fprintf(stderr, "next_step: unknown stage %s\n", stage);
        return 2;
    }
    report_addr("target", target);
    printf("@ request %zu\n", request);
    CHECKPOINT(1);
    if (is_malloc || is_calloc || is_realloc)
        do_malloc(is_calloc, is_realloc);
    else
        do_free();
    CHECKPOINT(2);
    return 0;
}
