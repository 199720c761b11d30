/*
 * all_bins.c - every kind of bin populated at the same moment.
 *
 * Idea: where a freed chunk goes depends on its size and on what is already
 * free.  At checkpoint 1 (glibc 2.36 behaviour on x86-64):
 *   tcache    full (7 entries) for chunk sizes 0x20, 0x40, 0x100 and 0x200
 *   fastbins  0x20 and 0x40: the frees that found their tcache bin full
 *   small     0x100 and 0x200: frees that found the tcache full went to the
 *             unsorted bin; a later large malloc sorted them into small bins
 *   large     0x440, 0x450, 0x450, 0x470 all in ONE large bin (several
 *             sizes and a duplicate, so fd_nextsize/bk_nextsize are used),
 *             0x800 in another large bin; sorted there by the same malloc
 *   unsorted  0x5e0 and 0x9d0, freed after that sorting malloc
 *
 * Chunk sizes are the same on i386 (requests are computed from the chunk
 * size with sizeof(size_t)).  Every chunk that gets freed has an in-use
 * "guard" chunk (malloc(16)) right after it, so no two free chunks touch
 * and nothing merges with top.  The order of the frees matters:
 *   1. small sizes 0x100/0x200: 18 each.  The first 7 fill their tcache
 *      bin, the other 11 go to the unsorted bin (to their small bin
 *      directly on glibc >= 2.41).
 *   2. the large chunks go to the unsorted bin (never to tcache: they are
 *      bigger than tcache's largest size, 0x410).
 *   3. sorter = malloc(4000): a large request that no free chunk can serve;
 *      on the way malloc sorts every unsorted chunk into its small/large
 *      bin, then carves the request from top.
 *   4. sizes 0x20/0x40: 18 each; 7 fill tcache, 11 go to the fastbins.
 *      Done after step 3 because a large malloc first consolidates the
 *      fastbins (malloc_consolidate) and would empty them.
 *   5. the two chunks meant for the unsorted bin.
 * Other glibc versions: on 2.43+ (no fastbins, 16 tcache entries per size)
 * 16 of each small size go to tcache and the last 2 to a small bin; the
 * "@ expect" lines describe glibc 2.36.
 *
 * Checkpoint 1: all of the above.
 */
#include "sample.h"

#define PER_SIZE 18 /* frees per tcache size: 7 (<= 2.42) or 16 (2.43+) fit */
#define MAX_SLOTS 200

struct slot {
    char name[24];
    void *p;
    size_t request;
    int is_free;
    const char *expect; /* bin at checkpoint 1 on glibc 2.36 */
};

static struct slot slots[MAX_SLOTS];
static int nslots;
static int nguards;

/* Request that gives a chunk of exactly chunk_size bytes (chunk_size a
 * multiple of 16): the chunk holds the request plus one size_t header. */
static size_t request_for_chunk(size_t chunk_size)
{
    return chunk_size - sizeof(size_t);
}

static struct slot *alloc_slot(const char *name, size_t request)
{
    struct slot *s;

    if (nslots >= MAX_SLOTS) {
        fprintf(stderr, "too many slots\n");
        exit(1);
    }
    s = &slots[nslots++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->request = request;
    s->p = xmalloc(request);
    memset(s->p, 0x41 + (nslots % 26), request);
    report_ptr(s->name, s->p, request);
    return s;
}

/* A chunk that stays in use, so its neighbours cannot coalesce. */
static void guard(void)
{
    char name[24];

    snprintf(name, sizeof name, "guard%d", ++nguards);
    alloc_slot(name, 16);
}

/* Allocate count chunks of one request size, each followed by a guard;
 * their slots are consecutive in slots[] except for the guards. */
static struct slot *alloc_group(const char *prefix, size_t request,
                                int count, struct slot **out)
{
    char name[24];

    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%s_%02d", prefix, i);
        out[i] = alloc_slot(name, request);
        guard();
    }
    return out[0];
}

static void release(struct slot *s, const char *expect)
{
    free(s->p);
    s->is_free = 1;
    s->expect = expect;
    report_free(s->name);
}

/* Free a whole group: the first 7 fill the tcache bin (glibc 2.36), the
 * rest go where `rest` says. */
static void release_group(struct slot **g, int count, const char *rest)
{
    for (int i = 0; i < count; i++)
        release(g[i], i < 7 ? "tcache" : rest);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    mi_open(); /* before any of the sample's own mallocs */

    struct slot *fast20[PER_SIZE], *fast40[PER_SIZE];
    struct slot *small100[PER_SIZE], *small200[PER_SIZE];
    struct slot *large[5], *unsorted[2], *sorter;
    /* chunk sizes for the large bins: 0x440..0x470 share one large bin,
     * 0x800 is in another one */
    static const size_t large_chunks[5] = {0x470, 0x450, 0x440, 0x450, 0x800};
    static const char *large_names[5] = {
        "large470", "large450a", "large440", "large450b", "large800"};

    /* ---- allocate everything (nothing is free yet) ---- */
    alloc_group("fast20", request_for_chunk(0x20), PER_SIZE, fast20);
    alloc_group("fast40", request_for_chunk(0x40), PER_SIZE, fast40);
    alloc_group("small100", request_for_chunk(0x100), PER_SIZE, small100);
    alloc_group("small200", request_for_chunk(0x200), PER_SIZE, small200);
    for (int i = 0; i < 5; i++) {
        large[i] = alloc_slot(large_names[i], request_for_chunk(large_chunks[i]));
        guard();
    }
    unsorted[0] = alloc_slot("unsorted1500", 1500);
    guard();
    unsorted[1] = alloc_slot("unsorted2500", 2500);
    guard();

    /* ---- 1. small sizes: fill tcache, the rest to unsorted ---- */
    release_group(small100, PER_SIZE, "small");
    release_group(small200, PER_SIZE, "small");

    /* ---- 2. large chunks: to the unsorted bin ---- */
    for (int i = 0; i < 5; i++)
        release(large[i], "large");

    /* ---- 3. sort the unsorted bin into small and large bins ---- */
    sorter = alloc_slot("sorter", 4000);
    (void)sorter;
    /* No guard after the sorter: a malloc(16) here would find tcache,
     * fastbins and the 0x20 small bin empty and would split a 0x100 chunk
     * from its small bin.  The sorter itself stays in use, next to top. */

    /* ---- 4. fast sizes: fill tcache, the rest to fastbins ---- */
    release_group(fast20, PER_SIZE, "fast");
    release_group(fast40, PER_SIZE, "fast");

    /* ---- 5. two chunks that stay in the unsorted bin ---- */
    release(unsorted[0], "unsorted");
    release(unsorted[1], "unsorted");

    for (int i = 0; i < nslots; i++)
        if (slots[i].is_free)
            report_expect(slots[i].name, slots[i].expect);
    CHECKPOINT(1);
    return 0;
}
