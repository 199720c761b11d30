/*
 * many.c - a big heap with every kind of bin well filled (benchmark input).
 *
 * Usage: many [N [SEED]]     N chunks (default 1000, 1..20000000),
 *                            SEED for the size generator (default 1)
 *
 * Idea: N chunks of mixed sizes (70% requests of 8..128 bytes, 20% of
 * 129..1024, 10% of 1025..4000, from a small deterministic xorshift
 * generator), then about a quarter of them freed so that on glibc 2.36
 * the tcache is full for many sizes, the fastbins hold long chains, the
 * small and large bins hold many chunks and the unsorted bin is not empty.
 * Only chunks whose neighbours stay in use are freed (index i % 4 == 1,
 * and i % 8 == 3 for the unsorted sprinkle), so nothing coalesces.
 *
 * The pointer and size arrays are mmap'd, not malloc'd, so they are not
 * chunks in the heap.
 *
 * Order of the frees (it matters, see all_bins.c):
 *   1. every chunk at i % 4 == 1 that is NOT fastbin-sized; after every
 *      8192 such frees, and once at the end, a malloc(5000) "sorter" (no
 *      free chunk is that big) sorts the unsorted bin into the small and
 *      large bins (one malloc sorts at most 10000 unsorted chunks).
 *   2. every fastbin-sized chunk at i % 4 == 1: 7 per size to tcache, the
 *      rest to the fastbins (after step 1, because a large malloc would
 *      consolidate the fastbins).
 *   3. chunks at i % 8 == 3 with a request above 1024: to the unsorted bin.
 * The last allocated chunk is never freed ("@ ptr last" stays in use).
 *
 * Output: @ ptr first/last, @ sorters COUNT REQUEST,
 *         @ many N CHUNKS_ALLOCATED FREED, @ sbrk start/end, checkpoint 1.
 * CHUNKS_ALLOCATED counts the N array chunks actually obtained (less than
 * N only if malloc failed); the sorters are extra, still allocated chunks.
 */
#include "sample.h"

#include <sys/mman.h>

#define MAX_N 20000000UL
#define SORTER_REQUEST 5000
#define SORT_EVERY 8192

static uint64_t rng_state;

static uint32_t pick_request(void)
{
    return rng_request(&rng_state, 90); /* 70% 8..128, 20% 129..1024, 10% 1025..4000 */
}

/* Largest request that glibc (<= 2.42, default M_MXFAST) puts in a
 * fastbin: max fast chunk is 0x80 on 64-bit, 0x40 on 32-bit. */
static size_t fast_max_request(void)
{
    size_t max_fast_chunk = (16 * sizeof(size_t) + sizeof(size_t)) & ~(size_t)15;
    return max_fast_chunk - sizeof(size_t);
}

static void *map_array(size_t bytes)
{
    void *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return a;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    unsigned long n = 1000, seed = 1;
    size_t allocated = 0, freed = 0, sorters = 0, since_sort = 0;
    void **ptrs;
    uint32_t *reqs;
    size_t fast_max = fast_max_request();

    parse_count_seed(argc, argv, "many", "N", MAX_N, &n, &seed);

    ptrs = map_array(n * sizeof(void *));
    reqs = map_array(n * sizeof(uint32_t));
    rng_state = rng_seeded(seed);

    report_sbrk("start");
    mi_open(); /* before the sample's own mallocs */

    /* ---- allocate ---- */
    for (size_t i = 0; i < n; i++) {
        uint32_t req = pick_request();
        void *p = malloc(req);
        if (p == NULL) {
            fprintf(stderr, "many: malloc failed after %zu chunks\n", i);
            break;
        }
        ptrs[i] = p;
        reqs[i] = req;
        allocated++;
    }
    if (allocated == 0)
        return 1;
    report_ptr("first", ptrs[0], reqs[0]);
    report_ptr("last", ptrs[allocated - 1], reqs[allocated - 1]);

    /* ---- 1. non-fast chunks at i % 4 == 1, sorted into bins ---- */
    for (size_t i = 1; i + 1 < allocated; i += 4) {
        if (reqs[i] <= fast_max)
            continue;
        free(ptrs[i]);
        ptrs[i] = NULL;
        freed++;
        if (++since_sort == SORT_EVERY) {
            if (malloc(SORTER_REQUEST) != NULL)
                sorters++;
            since_sort = 0;
        }
    }
    if (malloc(SORTER_REQUEST) != NULL)
        sorters++;

    /* ---- 2. fast-sized chunks at i % 4 == 1: tcache, then fastbins ---- */
    for (size_t i = 1; i + 1 < allocated; i += 4) {
        if (ptrs[i] == NULL)
            continue;
        free(ptrs[i]);
        ptrs[i] = NULL;
        freed++;
    }

    /* ---- 3. a sprinkle of large-ish chunks left in the unsorted bin ---- */
    for (size_t i = 3; i + 1 < allocated; i += 8) {
        if (reqs[i] <= 1024)
            continue;
        free(ptrs[i]);
        ptrs[i] = NULL;
        freed++;
    }

    printf("@ sorters %zu %d\n", sorters, SORTER_REQUEST);
    printf("@ many %lu %zu %zu\n", n, allocated, freed);
    report_sbrk("end");
    CHECKPOINT(1);
    return 0;
}
