/*
 * corrupt.c - the heap damaged the classic ways, stopped before glibc notices.
 *
 * usage: corrupt STAGE     (one damage per run; checkpoint 1 right after it)
 *
 *   overflow       a 24-byte chunk's data overflows into the next chunk's
 *                  size field ("AAAA..."), the chunk `victim`.
 *   overlap        an off-by-some write grows the next chunk's size from
 *                  0x20 to 0x60, so it swallows a free tcache chunk and
 *                  more (overlapping chunks); `victim` is the grown chunk.
 *   uaf_tcache     use after free: a freed tcache chunk's next pointer is
 *                  overwritten, safe-linked correctly (PROTECT_PTR), with
 *                  the address of a fake chunk in .bss (`fake`).
 *   uaf_tcache_raw the same, but written without safe-linking: the link
 *                  decodes to garbage.
 *   uaf_fast       use after free on a fastbin chunk's fd (tcache filled
 *                  first), safe-linked, to the fake chunk.
 *   uaf_fast_raw   the same without safe-linking.
 *   double_free    a double free into a fastbin: fill tcache, free(a),
 *                  free(b), free(a): fastbin a -> b -> a -> ...
 *   tcache_cycle   use after free making a tcache list loop: b -> a -> b.
 *   top_size       the top chunk's size overwritten with -1 (house of force).
 *   smallbin_bk    a chunk sitting in a small bin gets its bk forged to the
 *                  fake chunk (the classic smallbin / house of lore write).
 *
 * Fact lines (besides "@ ptr"): "@ addr damaged 0xADDR" is the chunk (header
 * address) whose header or links the damage touched, the one `heap check`
 * must name; "@ addr fake 0xADDR" the fake chunk; "@ addr other 0xADDR" a
 * second chunk involved (the chunk freed twice, the one the loop returns to).
 * Global `victim` holds the damaged chunk's user pointer (heap chunk victim).
 * Safe-linking is applied when the running glibc is 2.32 or later.  Written
 * for glibc 2.26-2.42 (tcache holds 7 chunks per size, fastbins exist).
 *
 * After the checkpoint the program leaves with _exit(), before glibc can
 * trip over the damage.
 */
#include "sample.h"

#include <gnu/libc-version.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free" /* the point of this sample */
#endif

#define TCACHE_FILL 7
#define FAST_REQUEST 24 /* chunk size 0x20 on x86-64 */

/* A fake chunk outside the heap, 16-byte aligned like a real one. */
size_t fake[8] __attribute__((aligned(16)));
void *victim;

static int safe_linking(void)
{
    int major = 0, minor = 0;

    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    return major > 2 || (major == 2 && minor >= 32);
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

static void *fill_and_report(const char *name, size_t request)
{
    void *p = xmalloc(request);

    memset(p, 'x', request);
    report_ptr(name, p, request);
    return p;
}

static void guard(void);

/* Frees TCACHE_FILL chunks of this request size, so the next free of that
 * size goes to a fastbin.  Each has a guard after it so nothing merges. */
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

/* a and b of FAST_REQUEST bytes, each with a guard, freed a then b: to
 * tcache[0] (b -> a), or with fast set, after filling tcache, to fastbin[0]. */
static void free_two(void **a, void **b, int fast)
{
    *a = fill_and_report("a", FAST_REQUEST);
    guard();
    *b = fill_and_report("b", FAST_REQUEST);
    guard();
    if (fast)
        fill_tcache(FAST_REQUEST);
    free(*a);
    free(*b);
}

int main(int argc, char **argv)
{
    const char *stage = argc > 1 ? argv[1] : "";
    void *a, *b;

    setvbuf(stdout, NULL, _IONBF, 0);
    report_addr("fake", fake);
    fake[1] = 0x21; /* a plausible size field for the fake chunk */

    if (strcmp(stage, "overflow") == 0) {
        a = fill_and_report("a", 24);
        victim = fill_and_report("b", 24);
        (void)fill_and_report("c", 24);
        memset(a, 'A', 24 + sizeof(size_t)); /* 8 bytes too many: b's size */
        damaged(chunk_of(victim));
    } else if (strcmp(stage, "overlap") == 0) {
        void *c, *d;
        a = fill_and_report("a", 24);
        victim = fill_and_report("b", 24);
        c = fill_and_report("c", 24);
        d = fill_and_report("d", 24);
        (void)fill_and_report("e", 24);
        free(c); /* tcache: inside b once b's size is grown */
        report_free("c");
        ((size_t *)a)[3] = 0x61; /* b's size: 0x20 -> 0x60 (b, c, d) */
        damaged(chunk_of(victim));
        other(chunk_of(c));
        (void)d;
    } else if (strcmp(stage, "uaf_tcache") == 0 || strcmp(stage, "uaf_tcache_raw") == 0) {
        free_two(&a, &b, 0); /* tcache[0]: b -> a */
        victim = b;
        *(void **)b = stage[10] == '_' ? (void *)&fake[2] : protect(b, &fake[2]);
        damaged(chunk_of(b));
    } else if (strcmp(stage, "uaf_fast") == 0 || strcmp(stage, "uaf_fast_raw") == 0) {
        free_two(&a, &b, 1); /* fastbin[0]: b -> a (tcache full) */
        victim = b;
        /* a fastbin fd holds a chunk address, not a user pointer */
        *(void **)b = stage[8] == '_' ? (void *)fake : protect(b, fake);
        damaged(chunk_of(b));
    } else if (strcmp(stage, "double_free") == 0) {
        free_two(&a, &b, 1);
        free(a); /* not the fastbin's top, so "fasttop" does not see it */
        victim = b; /* b's fd leads back to a: the loop closes at b */
        damaged(chunk_of(b));
        other(chunk_of(a));
    } else if (strcmp(stage, "tcache_cycle") == 0) {
        free_two(&a, &b, 0); /* tcache[0]: b -> a */
        *(void **)a = protect(a, b); /* a -> b: b -> a -> b -> ... */
        victim = a;
        damaged(chunk_of(a));
        other(chunk_of(b));
    } else if (strcmp(stage, "top_size") == 0) {
        a = fill_and_report("a", 24); /* the last chunk before top */
        ((size_t *)a)[3] = (size_t)-1; /* top's size field */
        victim = (char *)a + 4 * sizeof(size_t);
        damaged(chunk_of(victim));
    } else if (strcmp(stage, "smallbin_bk") == 0) {
        void *p[TCACHE_FILL];
        for (int i = 0; i < TCACHE_FILL; i++) {
            p[i] = xmalloc(0xf8); /* chunk size 0x100 */
            guard();
        }
        a = fill_and_report("a", 0xf8);
        guard();
        for (int i = 0; i < TCACHE_FILL; i++)
            free(p[i]);
        free(a); /* tcache full: to the unsorted bin */
        victim = a;
        (void)xmalloc(4000); /* sorts a into small bin 16 */
        ((void **)victim)[1] = fake; /* bk */
        damaged(chunk_of(a));
    } else {
        fprintf(stderr, "usage: corrupt overflow|overlap|uaf_tcache|uaf_tcache_raw|uaf_fast|"
                        "uaf_fast_raw|double_free|tcache_cycle|top_size|smallbin_bk\n");
        return 2;
    }
    printf("@ checkpoint 1\n");
    checkpoint(1);
    _exit(0);
}
