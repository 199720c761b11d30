/*
 * churn.c - short-lived allocations, as most programs make them (benchmark input).
 *
 * Usage: churn [STEPS [SEED]]   STEPS steps (default 1000, 1..100000000),
 *                               SEED for the generator (default 1)
 *
 * Idea: a pool of 64 slots; each step picks a slot (xorshift64*): an empty
 * slot gets malloc(request), with requests 70% of 8..128 bytes, 25% of
 * 129..1024, 5% of 1025..4000 (as many.c's, minus most of the big ones);
 * a full slot is freed.  Objects live a few dozen steps, so after a warm-up
 * most mallocs are served by the thread's tcache and most frees go back to
 * it; the rest (a tcache bin empty or full, a request past the tcache) take
 * glibc's other paths: top, the fast bins, the unsorted and small bins.
 * At the end every slot still held is freed, then checkpoint 1.
 *
 * Output: every call, "@ malloc SLOT REQUEST 0xPTR" and "@ free SLOT 0xPTR",
 * then "@ churn STEPS MALLOCS FREES" and checkpoint 1.  The pool is static:
 * nothing but the sample's own mallocs is in the heap.
 */
#include "sample.h"

#define SLOTS 64
#define MAX_STEPS 100000000UL

static uint64_t rng_state;

static uint32_t pick_request(void)
{
    return rng_request(&rng_state, 95); /* 70% 8..128, 25% 129..1024, 5% 1025..4000 */
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    static void *slot[SLOTS];
    unsigned long steps = 1000, seed = 1, mallocs = 0, frees = 0;

    parse_count_seed(argc, argv, "churn", "STEPS", MAX_STEPS, &steps, &seed);
    rng_state = rng_seeded(seed);

    for (unsigned long i = 0; i < steps; i++) {
        unsigned s = rng_step(&rng_state) % SLOTS;
        if (slot[s] == NULL) {
            uint32_t req = pick_request();
            slot[s] = xmalloc(req);
            mallocs++;
            printf("@ malloc %u %u 0x%" PRIxPTR "\n", s, req, (uintptr_t)slot[s]);
        } else {
            printf("@ free %u 0x%" PRIxPTR "\n", s, (uintptr_t)slot[s]);
            free(slot[s]);
            slot[s] = NULL;
            frees++;
        }
    }
    for (unsigned s = 0; s < SLOTS; s++) {
        if (slot[s] != NULL) {
            printf("@ free %u 0x%" PRIxPTR "\n", s, (uintptr_t)slot[s]);
            free(slot[s]);
            slot[s] = NULL;
            frees++;
        }
    }
    printf("@ churn %lu %lu %lu\n", steps, mallocs, frees);
    CHECKPOINT(1);
    return 0;
}
