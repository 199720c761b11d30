/*
 * corrupt.c - the heap damaged the classic ways, stopped before glibc notices,
 * then carried on until glibc notices.
 *
 * usage: corrupt STAGE     (one damage per run; checkpoint 1 right after it)
 *
 * Every chunk the damage is about has the smallest size, MINSIZE (0x20 on
 * x86-64, 0x10 on i386: malloc(3 * sizeof(size_t))), so it belongs to
 * tcache[0] and fastbin[0] on every architecture.
 *
 *   overflow       a small chunk's data overflows into the next chunk's
 *                  prev_size and size fields ("AAAA..."), the chunk `victim`.
 *   overflow_far   the same overflow from a into b's header, then chunks c
 *                  and d (swallowed: b's bogus size covers them), e freed
 *                  into tcache[0] (where the walk can pick up again), a guard,
 *                  and f, whose size is overwritten with 8 (BAD_SIZE): `victim`
 *                  and the damaged chunk are f, which free() aborts on.
 *   overlap        an off-by-some write grows the next chunk's size to three
 *                  chunks' worth (0x60 on x86-64, 0x30 on i386), so it
 *                  swallows a free tcache chunk and more (overlapping chunks);
 *                  `victim` is the grown chunk.
 *   uaf_tcache     use after free: a freed tcache chunk's next pointer is
 *                  overwritten, safe-linked correctly (PROTECT_PTR), with
 *                  the address of a fake chunk in .bss (`fake`).
 *   uaf_tcache_stack  the same, to a fake chunk on main's stack
 *                  ("@ addr stackfake 0xADDR").
 *   uaf_tcache_raw the same, but written without safe-linking: the link
 *                  decodes to garbage.
 *   uaf_fast       use after free on a fastbin chunk's fd (tcache filled
 *                  first), safe-linked, to the fake chunk.
 *   uaf_fast_raw   the same without safe-linking.
 *   uaf_fast_raw_threads  the same after a thread has come and gone: glibc
 *                  is no longer SINGLE_THREAD_P (never again), so malloc
 *                  unlinks a fast bin's head with REMOVE_FB, which checks
 *                  the head's fd first ("... detected", no number).
 *                  (Both refused from glibc 2.43, which has no fastbins: the
 *                  tcache equivalent is uaf_tcache.)
 *   double_free    a double free glibc does not notice, making a list loop:
 *                  up to 2.42 into a fastbin: fill tcache, free(a), free(b),
 *                  free(a): fastbin a -> b -> a -> ...; from 2.43 (no
 *                  fastbins) into the tcache: free(a), free(b), a's tcache
 *                  key overwritten (use after free), free(a): the same loop.
 *   tcache_cycle   use after free making a tcache list loop: b -> a -> b.
 *   top_size       the top chunk's size overwritten with -1 (house of force).
 *   smallbin_bk    a chunk sitting alone in a small bin gets its bk forged to
 *                  the fake chunk (the classic smallbin / house of lore write).
 *   smallbin_stash_bk  a small bin holds two chunks; the one malloc stashes
 *                  into the tcache after its victim (not the victim) gets its
 *                  bk forged to the fake chunk, whose bk leads back to the
 *                  bin (the fake chunk is stashed too; nothing checks).
 *   invalid_size   an in-use chunk's size overwritten with 8 (below MINSIZE).
 *   fast_size      a fastbin chunk's size overwritten with 2 * MINSIZE (the
 *                  size of another fastbin).
 *   fast_invalid_size  a fastbin chunk's size overwritten with 8; the mallocs
 *                  of its size take it out of its fast bin.
 *   consolidate_size  the same damage; a large request consolidates the fast
 *                  bins instead (malloc_consolidate's own check).
 *                  (fast_size, fast_invalid_size and consolidate_size are
 *                  refused from 2.43.)
 *   zero_size      an in-use chunk's size overwritten with 0, then freed.
 *   unsorted_bk    a large chunk (LARGE: 0x500, past the tcache) sitting in
 *                  the unsorted bin gets its bk forged to the fake chunk.
 *   unsorted_size  ... gets a huge size (a quarter of the address space).
 *   unsorted_prev_size   the chunk after a LARGE chunk in the unsorted bin
 *                  gets its prev_size overwritten with 0.
 *   unsorted_prev_inuse  ... gets its PREV_INUSE bit set.
 *   large_prev_size      the same as unsorted_prev_size, the chunk sorted
 *                  into its large bin first.
 *   large_nextsize a large bin's only chunk gets its fd_nextsize forged to the
 *                  fake chunk.
 *   large_bk       a large bin's only chunk (0x440) gets its bk forged to the
 *                  fake chunk; a malloc of its size takes it out (unlink_chunk).
 *   large_bk_sort  the same, and a bigger chunk of the same bin (0x450) waits
 *                  in the unsorted bin: a large request sorts it in front of
 *                  the damaged chunk.
 *   tcache_key     three chunks in tcache[0]; the middle one's tcache key is
 *                  overwritten (use after free), the others intact.
 *   non_main_arena an in-use LARGE chunk of the main arena's heap gets the
 *                  NON_MAIN_ARENA bit (house of mind), then is freed: glibc
 *                  looks for a heap_info at its HEAP_MAX_SIZE-aligned base.
 *   prev_inuse     the chunk after an in-use LARGE chunk gets its PREV_INUSE
 *                  bit cleared.
 *
 * Fact lines (besides "@ ptr"): "@ addr damaged 0xADDR" is the chunk (header
 * address) whose header or links the damage touched, the one `heap check`
 * must name; "@ addr fake 0xADDR" the fake chunk; "@ addr other 0xADDR" a
 * second chunk involved (the chunk freed twice, the one the loop returns to);
 * "@ addr key 0xKEY" (tcache_key) the key field of an intact tcache entry, as
 * glibc's free wrote it;
 * "@ size_t N" is sizeof(size_t), SIZE_SZ, which the sizes above follow.
 * Global `victim` holds the damaged chunk's user pointer (heap chunk victim).
 * Safe-linking is applied when the running glibc is 2.32 or later.  Written
 * for glibc 2.26 and later (tcache holds 7 chunks per size up to 2.42, 16
 * from 2.43, which also removed the fastbins).
 *
 * After the checkpoint the program carries on (carry_on()): it makes the
 * malloc or free calls the damage breaks in a real program, the ones whose
 * check in glibc looks at the damaged chunk, so glibc prints its abort
 * message on stderr and raises SIGABRT; where glibc has no check for the
 * damage, the program leaves with _exit(0).  "@ carry on" is printed first.
 */
#include "sample.h"

#include <gnu/libc-version.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free" /* the point of this sample */
#endif

#define TCACHE_FILL 16 /* at least what a tcache bin holds: 7 up to glibc 2.42, 16 from 2.43 */
#define SMALL_REQUEST (3 * sizeof(size_t)) /* chunk size MINSIZE: 0x20 on x86-64, 0x10 on i386 */
#define MINSIZE (4 * sizeof(size_t))
/* Chunk sizes past the tcache (its largest chunk is 0x410 on x86-64, 0x400 on
 * i386) and MIN_LARGE_SIZE: large bin chunks on both, freed to the unsorted bin. */
#define LARGE_REQUEST (0x500 - sizeof(size_t))  /* chunk size 0x500 */
#define LARGE_A_REQUEST (0x440 - sizeof(size_t)) /* 0x440 and 0x450: the same large bin */
#define LARGE_B_REQUEST (0x450 - sizeof(size_t))
#define SORT_REQUEST 0x1000 /* a large request no free chunk serves: sorts the unsorted bin */
#define BAD_SIZE ((size_t)8 | 1) /* below MINSIZE on x86-64 and i386; PREV_INUSE */
#define HUGE_SIZE (((size_t)1 << (8 * sizeof(size_t) - 2)) | 1) /* 0x4000...0 and PREV_INUSE */
#define NON_MAIN_ARENA 4

/* A fake chunk outside the heap, placed like a real one: its user pointer
 * (FAKE_MEM) 16-byte aligned, its header 2 * SIZE_SZ before that. */
size_t fake[0x200 / sizeof(size_t)] __attribute__((aligned(16))); /* room for a 0x100 chunk's next size */
#define FAKE_MEM ((void *)((char *)fake + 16))
void *victim;

static int glibc_at_least(int want_major, int want_minor)
{
    int major = 0, minor = 0;

    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    return major > want_major || (major == want_major && minor >= want_minor);
}

static int safe_linking(void)
{
    return glibc_at_least(2, 32);
}

static int has_fastbins(void)
{
    return !glibc_at_least(2, 43);
}

/* How many chunks a tcache bin holds (mp_.tcache_count's default). */
static int tcache_count(void)
{
    return glibc_at_least(2, 43) ? 16 : 7;
}

/* PROTECT_PTR (malloc.c): what glibc stores in a tcache next / fastbin fd. */
static void *protect(void *field, void *target)
{
    if (!safe_linking())
        return target;
    return (void *)(((uintptr_t)field >> 12) ^ (uintptr_t)target);
}

static void *chunk_of(void *mem)
{
    return (char *)mem - 2 * sizeof(size_t);
}

/* The size field of the chunk at `chunk` (prev_size is word 0). */
static size_t *size_field(void *chunk)
{
    return (size_t *)chunk + 1;
}

static void *fill_and_report(const char *name, size_t request)
{
    void *p = xmalloc(request);

    memset(p, 'x', request);
    report_ptr(name, p, request);
    return p;
}

static void guard(void);

/* Frees TCACHE_FILL chunks of this request size, so the tcache bin of that
 * size is full and the next free of that size goes past it (a small chunk:
 * to a fastbin; from 2.43, which has none, to its small bin).  Each has a
 * guard after it so nothing merges. */
static void fill_tcache(size_t request)
{
    void *p[TCACHE_FILL];

    for (int i = 0; i < TCACHE_FILL; i++) {
        p[i] = xmalloc(request);
        guard();
    }
    for (int i = 0; i < TCACHE_FILL; i++)
        free(p[i]);
}

/* An in-use chunk of another size (0x30), so nothing merges and no tcache
 * bin the stage uses is touched. */
static void guard(void)
{
    (void)xmalloc(40);
}

static void damaged(void *chunk)
{
    report_addr("damaged", chunk);
}

static void other(void *chunk)
{
    report_addr("other", chunk);
}

/* a and b of SMALL_REQUEST bytes, each with a guard, freed a then b: to
 * tcache[0] (b -> a), or with fast set, after filling tcache, to fastbin[0]. */
static void free_two(void **a, void **b, int fast)
{
    *a = fill_and_report("a", SMALL_REQUEST);
    guard();
    *b = fill_and_report("b", SMALL_REQUEST);
    guard();
    if (fast)
        fill_tcache(SMALL_REQUEST);
    free(*a);
    free(*b);
}

/* A LARGE chunk before a guard, freed: to the unsorted bin.  The guard is
 * returned. */
static void *free_large(const char *name, void **a, size_t request)
{
    void *g;

    *a = fill_and_report(name, request);
    g = xmalloc(40);
    free(*a);
    report_free(name);
    return chunk_of(g);
}

/* a (and b, unless NULL) of chunk size 0x100 in their small bin, each with a
 * guard: a full tcache bin first, then a, b freed (to the unsorted bin; from
 * 2.41 straight to the small bin) and a request no free chunk serves sorts
 * them there, b in front of a. */
static void small_bin(void **a, void **b)
{
    void *p[TCACHE_FILL];

    for (int i = 0; i < TCACHE_FILL; i++) {
        p[i] = xmalloc(0xf8); /* chunk size 0x100 */
        guard();
    }
    *a = fill_and_report("a", 0xf8);
    guard();
    if (b) {
        *b = fill_and_report("b", 0xf8);
        guard();
    }
    for (int i = 0; i < tcache_count(); i++)
        free(p[i]); /* exactly a full tcache bin */
    free(*a);
    if (b)
        free(*b);
    (void)xmalloc(4000);
}

/* The two words after a chunk's size: fd and bk (user data words 0 and 1). */
static void **links(void *chunk)
{
    return (void **)((char *)chunk + 2 * sizeof(size_t));
}

static int is(const char *stage, const char *name)
{
    return strcmp(stage, name) == 0;
}

static void empty_tcache(size_t request)
{
    for (int i = 0; i < tcache_count(); i++)
        (void)xmalloc(request);
}

/* After the checkpoint: the calls the damage breaks.  `other_mem` is the
 * in-use chunk before the damaged one where freeing it is what trips glibc. */
static void carry_on(const char *stage, void *other_mem)
{
    printf("@ carry on\n");
    if (is(stage, "overflow") || is(stage, "overflow_far") || is(stage, "overlap") || is(stage, "invalid_size")
        || is(stage, "zero_size") || is(stage, "non_main_arena")) {
        free(victim); /* glibc's free checks the damaged size (overlap: none) */
        (void)xmalloc(3 * MINSIZE - sizeof(size_t));
    } else if (is(stage, "uaf_tcache") || is(stage, "uaf_tcache_raw") || is(stage, "uaf_tcache_stack")
               || is(stage, "tcache_cycle") || is(stage, "tcache_key")) {
        for (int i = 0; i < 3; i++)
            (void)xmalloc(SMALL_REQUEST); /* the list's chunks, then where its link leads */
    } else if (strncmp(stage, "uaf_fast", 8) == 0 || is(stage, "double_free")
               || is(stage, "fast_size") || is(stage, "fast_invalid_size")) {
        empty_tcache(SMALL_REQUEST);
        for (int i = 0; i < 3; i++)
            (void)xmalloc(SMALL_REQUEST); /* from the fastbin, stashing the rest into the tcache */
    } else if (is(stage, "consolidate_size")) {
        (void)xmalloc(SORT_REQUEST); /* a large request consolidates the fastbins first */
    } else if (is(stage, "top_size")) {
        (void)xmalloc(SORT_REQUEST); /* from top */
    } else if (is(stage, "smallbin_bk") || is(stage, "smallbin_stash_bk")) {
        empty_tcache(0xf8);
        (void)xmalloc(0xf8); /* the small bin's last chunk (and the rest: to the tcache) */
    } else if (is(stage, "unsorted_bk") || is(stage, "unsorted_prev_size") || is(stage, "unsorted_prev_inuse")
               || is(stage, "unsorted_size") || is(stage, "large_bk_sort")) {
        (void)xmalloc(SORT_REQUEST); /* takes the unsorted bin's chunks to their bins */
    } else if (is(stage, "large_bk")) {
        (void)xmalloc(LARGE_A_REQUEST); /* the large bin's chunk: unlink_chunk */
    } else if (is(stage, "large_prev_size") || is(stage, "large_nextsize") || is(stage, "prev_inuse")) {
        free(other_mem); /* merges with the free chunk after it (prev_inuse: checks the next's bit) */
    }
    _exit(0);
}

static void *idle(void *arg)
{
    return arg;
}

/* One thread created and joined: glibc stops being SINGLE_THREAD_P for good. */
static void run_a_thread(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL) != 0 || pthread_join(t, NULL) != 0)
        exit(4);
}

int main(int argc, char **argv)
{
    const char *stage = argc > 1 ? argv[1] : "";
    void *a, *b, *other_mem = NULL;
    /* A fake chunk on the stack, placed like `fake` (uaf_tcache_stack). */
    size_t stack_fake[8] __attribute__((aligned(16))) = {0};

    setvbuf(stdout, NULL, _IONBF, 0);
    printf("@ size_t %zu\n", sizeof(size_t));
    report_addr("fake", chunk_of(FAKE_MEM));
    *size_field(chunk_of(FAKE_MEM)) = MINSIZE | 1; /* a plausible size field for the fake chunk */
    /* and a list's end: a tcache next / fastbin fd holding NULL (PROTECT_PTR of
     * NULL), which no bin's double-link check takes for a chunk */
    *(void **)FAKE_MEM = protect(FAKE_MEM, NULL);

    if (strcmp(stage, "overflow") == 0) {
        a = fill_and_report("a", SMALL_REQUEST);
        victim = fill_and_report("b", SMALL_REQUEST);
        (void)fill_and_report("c", SMALL_REQUEST);
        /* a's usable bytes, then b's prev_size and size: up to b's data */
        memset(a, 'A', (size_t)((char *)victim - (char *)a));
        damaged(chunk_of(victim));
    } else if (is(stage, "overflow_far")) {
        void *e;
        a = fill_and_report("a", SMALL_REQUEST);
        b = fill_and_report("b", SMALL_REQUEST);
        (void)fill_and_report("c", SMALL_REQUEST);
        (void)fill_and_report("d", SMALL_REQUEST);
        e = fill_and_report("e", SMALL_REQUEST);
        guard();
        victim = fill_and_report("f", SMALL_REQUEST);
        guard();
        free(e); /* tcache[0]: a chunk a bin lists, after the swallowed ones */
        report_free("e");
        memset(a, 'A', (size_t)((char *)b - (char *)a)); /* b's prev_size and size */
        *size_field(chunk_of(victim)) = BAD_SIZE;
        damaged(chunk_of(victim));
        other(chunk_of(b));
    } else if (strcmp(stage, "overlap") == 0) {
        void *c, *d;
        a = fill_and_report("a", SMALL_REQUEST);
        victim = fill_and_report("b", SMALL_REQUEST);
        c = fill_and_report("c", SMALL_REQUEST);
        d = fill_and_report("d", SMALL_REQUEST);
        (void)fill_and_report("e", SMALL_REQUEST);
        free(c); /* tcache: inside b once b's size is grown */
        report_free("c");
        *size_field(chunk_of(victim)) = 3 * MINSIZE | 1; /* b's size grown over b, c and d */
        damaged(chunk_of(victim));
        other(chunk_of(c));
        (void)d;
    } else if (strcmp(stage, "uaf_tcache") == 0 || strcmp(stage, "uaf_tcache_raw") == 0) {
        free_two(&a, &b, 0); /* tcache[0]: b -> a */
        victim = b;
        *(void **)b = stage[10] == '_' ? FAKE_MEM : protect(b, FAKE_MEM);
        damaged(chunk_of(b));
    } else if (is(stage, "uaf_tcache_stack")) {
        /* placed like `fake`: the user pointer 16 bytes in, aligned (i386: the chunk 8 bytes in) */
        void *mem = (char *)stack_fake + 16;
        *size_field(chunk_of(mem)) = MINSIZE | 1;
        *(void **)mem = protect(mem, NULL);
        report_addr("stackfake", chunk_of(mem));
        free_two(&a, &b, 0); /* tcache[0]: b -> a */
        victim = b;
        *(void **)b = protect(b, mem);
        damaged(chunk_of(b));
    } else if ((is(stage, "uaf_fast") || is(stage, "uaf_fast_raw") || is(stage, "uaf_fast_raw_threads"))
               && has_fastbins()) {
        if (is(stage, "uaf_fast_raw_threads"))
            run_a_thread();
        free_two(&a, &b, 1); /* fastbin[0]: b -> a (tcache full) */
        victim = b;
        /* a fastbin fd holds a chunk address, not a user pointer */
        *(void **)b = stage[8] == '_' ? chunk_of(FAKE_MEM) : protect(b, chunk_of(FAKE_MEM));
        damaged(chunk_of(b));
    } else if (strcmp(stage, "double_free") == 0) {
        if (has_fastbins()) {
            free_two(&a, &b, 1);
            free(a); /* not the fastbin's top, so "fasttop" does not see it */
        } else {
            free_two(&a, &b, 0); /* tcache[0]: b -> a */
            ((void **)a)[1] = NULL; /* a's tcache key: free() no longer sees a in the tcache */
            free(a);
        }
        victim = b; /* b's link leads back to a: the loop closes at b */
        damaged(chunk_of(b));
        other(chunk_of(a));
    } else if (strcmp(stage, "tcache_cycle") == 0) {
        free_two(&a, &b, 0); /* tcache[0]: b -> a */
        *(void **)a = protect(a, b); /* a -> b: b -> a -> b -> ... */
        victim = a;
        damaged(chunk_of(a));
        other(chunk_of(b));
    } else if (strcmp(stage, "top_size") == 0) {
        void *top;
        a = fill_and_report("a", SMALL_REQUEST); /* the last chunk before top */
        top = (char *)chunk_of(a) + (*size_field(chunk_of(a)) & ~(size_t)7);
        *size_field(top) = (size_t)-1;
        victim = (char *)top + 2 * sizeof(size_t);
        damaged(top);
    } else if (strcmp(stage, "smallbin_bk") == 0) {
        small_bin(&a, NULL); /* a is the small bin's only chunk */
        victim = a;
        ((void **)victim)[1] = chunk_of(FAKE_MEM); /* bk */
        damaged(chunk_of(a));
    } else if (is(stage, "smallbin_stash_bk")) {
        small_bin(&a, &b); /* b -> a, a the victim (the bin's last) */
        links(chunk_of(FAKE_MEM))[1] = links(chunk_of(b))[1]; /* the fake chunk's bk: b's, the bin */
        links(chunk_of(b))[1] = chunk_of(FAKE_MEM); /* b's bk */
        victim = b;
        damaged(chunk_of(b));
    } else if (is(stage, "invalid_size") || is(stage, "zero_size")) {
        a = fill_and_report("a", SMALL_REQUEST);
        victim = fill_and_report("b", SMALL_REQUEST);
        guard();
        *size_field(chunk_of(victim)) = is(stage, "zero_size") ? 0 : BAD_SIZE;
        damaged(chunk_of(victim));
    } else if (is(stage, "non_main_arena")) {
        victim = fill_and_report("b", LARGE_REQUEST); /* past the tcache: free() asks for its arena */
        guard();
        *size_field(chunk_of(victim)) |= NON_MAIN_ARENA;
        damaged(chunk_of(victim));
    } else if (is(stage, "tcache_key")) {
        void *c = fill_and_report("c", SMALL_REQUEST);
        guard();
        free_two(&a, &b, 0); /* tcache[0]: b -> a */
        free(c); /* tcache[0]: c -> b -> a */
        report_addr("key", (void *)((size_t *)a)[1]); /* what glibc's free wrote: its tcache key */
        ((size_t *)b)[1] ^= 0x5a5a; /* b's key: overwritten, still no pointer */
        victim = b;
        damaged(chunk_of(b));
    } else if ((is(stage, "fast_size") || is(stage, "fast_invalid_size") || is(stage, "consolidate_size"))
               && has_fastbins()) {
        free_two(&a, &b, 1); /* fastbin[0]: b -> a (tcache full) */
        victim = b;
        *size_field(chunk_of(b)) = is(stage, "fast_size") ? 2 * MINSIZE | 1 : BAD_SIZE;
        damaged(chunk_of(b));
    } else if (is(stage, "unsorted_bk") || is(stage, "unsorted_prev_size") || is(stage, "unsorted_prev_inuse")
               || is(stage, "unsorted_size")) {
        void *g = free_large("a", &a, LARGE_REQUEST);
        victim = a;
        if (is(stage, "unsorted_bk"))
            links(chunk_of(a))[1] = chunk_of(FAKE_MEM);
        else if (is(stage, "unsorted_size"))
            *size_field(chunk_of(a)) = HUGE_SIZE;
        else if (is(stage, "unsorted_prev_size"))
            *(size_t *)g = 0; /* the guard's prev_size: a's footer */
        else
            *size_field(g) |= 1; /* the guard's PREV_INUSE */
        damaged(chunk_of(a));
    } else if (is(stage, "large_prev_size") || is(stage, "large_nextsize") || is(stage, "prev_inuse")) {
        void *g;
        other_mem = fill_and_report("m", LARGE_REQUEST); /* in use, right before a */
        if (is(stage, "prev_inuse")) {
            victim = fill_and_report("b", SMALL_REQUEST); /* in use, right after m */
            guard();
            *size_field(chunk_of(victim)) &= ~(size_t)1; /* says m is free */
            damaged(chunk_of(victim));
            other(chunk_of(other_mem));
        } else {
            g = free_large("a", &a, LARGE_REQUEST);
            (void)xmalloc(SORT_REQUEST); /* a: to its large bin */
            victim = a;
            if (is(stage, "large_prev_size"))
                *(size_t *)g = 0;
            else
                links(chunk_of(a))[2] = chunk_of(FAKE_MEM); /* fd_nextsize */
            damaged(chunk_of(a));
        }
    } else if (is(stage, "large_bk") || is(stage, "large_bk_sort")) {
        b = fill_and_report("b", LARGE_B_REQUEST); /* before the damage: no malloc may take a */
        guard();
        free_large("a", &a, LARGE_A_REQUEST);
        (void)xmalloc(SORT_REQUEST); /* a: alone in its large bin */
        links(chunk_of(a))[1] = chunk_of(FAKE_MEM);
        if (is(stage, "large_bk_sort")) {
            free(b); /* the unsorted bin; to be sorted in front of a, the smaller */
            report_free("b");
        }
        victim = a;
        damaged(chunk_of(a));
    } else if (strncmp(stage, "uaf_fast", 8) == 0 || is(stage, "fast_size") || is(stage, "fast_invalid_size")
               || is(stage, "consolidate_size")) {
        fprintf(stderr, "corrupt: %s: glibc %s has no fastbins (glibc 2.43 removed them)\n", stage,
                gnu_get_libc_version());
        return 3;
    } else {
        fprintf(stderr, "usage: corrupt overflow|overflow_far|overlap|uaf_tcache|uaf_tcache_raw|uaf_tcache_stack|"
                        "uaf_fast|uaf_fast_raw|uaf_fast_raw_threads|double_free|tcache_cycle|top_size|smallbin_bk|smallbin_stash_bk|"
                        "invalid_size|zero_size|fast_size|fast_invalid_size|consolidate_size|unsorted_bk|"
                        "unsorted_size|unsorted_prev_size|unsorted_prev_inuse|large_prev_size|large_nextsize|"
                        "large_bk|large_bk_sort|prev_inuse|tcache_key|non_main_arena\n");
        return 2;
    }
    printf("@ checkpoint 1\n");
    checkpoint(1);
    carry_on(stage, other_mem);
}
