/*
 * noncontig.c - a main arena that is not one contiguous heap.
 *
 * Idea: the main arena grows its heap with sbrk.  When the program break
 * cannot move (a mapping sits right above it), glibc's sysmalloc carries on
 * in a mapping of its own (at least 1 MiB, MMAP_AS_MORECORE_SIZE) and marks
 * main_arena non-contiguous; when the program moves the break itself
 * between mallocs (a "foreign" sbrk), glibc's next sbrk does not continue
 * its heap either.  Both times glibc ends the old top with a fencepost (two
 * chunks of size CHUNK_HDR_SZ, 2 * SIZE_SZ) and starts a new region.
 *
 * Usage: noncontig [mmap|sbrk]
 *   mmap (default): the break is blocked by a read-only page right above it.
 *   sbrk: the program calls sbrk itself between mallocs (main_arena stays
 *         contiguous: glibc counts the foreign bytes in system_mem).
 *
 * Checkpoints:
 *   1  after 40 x malloc(60000), every third freed, with the break blocked
 *      (mmap) or with a foreign sbrk after every tenth malloc (sbrk)
 *
 * Facts: "@ ptr" for every malloc (freed ones get "@ free"), "@ sbrk"
 * before and after each foreign sbrk, "@ mallinfo2 ARENA ORDBLKS UORDBLKS
 * FORDBLKS" snapshotted just before the checkpoint (also in mi2_buf).
 */
#include "sample.h"

#include <sys/mman.h>

#define NBIG 40
#define BIG_REQUEST 60000
#define FOREIGN_SBRK 1000 /* deliberately not a multiple of the alignment */

/* mallinfo2() just before the checkpoint, for the debugger to read: arena,
 * ordblks, uordblks, fordblks (mallinfo2 itself does not allocate). */
size_t mi2_buf[4];

/* mallinfo2 came in glibc 2.33; the matrix compiles this sample against 2.31's headers and
 * runs it on newer glibcs too: a weak reference of our own to it, and mallinfo (int fields,
 * enough for this small heap) where the glibc running has none. */
struct mallinfo2_fields {
    size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
extern struct mallinfo2_fields weak_mallinfo2(void) __asm__("mallinfo2") __attribute__((weak));

static void snapshot_mallinfo2(void)
{
    struct mallinfo2_fields mi;

    if (weak_mallinfo2) {
        mi = weak_mallinfo2();
    } else {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
        mi.arena = (size_t)old.arena;
        mi.ordblks = (size_t)old.ordblks;
        mi.uordblks = (size_t)old.uordblks;
        mi.fordblks = (size_t)old.fordblks;
    }
    mi2_buf[0] = mi.arena;
    mi2_buf[1] = mi.ordblks;
    mi2_buf[2] = mi.uordblks;
    mi2_buf[3] = mi.fordblks;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */

    int foreign = argc > 1 && strcmp(argv[1], "sbrk") == 0;
    char *big[NBIG];
    char name[16];

    mi_open(); /* before the sample's own mallocs */
    char *p = xmalloc(100);
    report_ptr("p", p, 100);
    if (!foreign) {
        void *block = mmap(sbrk(0), 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (block == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        report_addr("blocker", block);
    }
    for (int i = 0; i < NBIG; i++) {
        if (foreign && i % 10 == 5) {
            report_sbrk("before_foreign");
            if (sbrk(FOREIGN_SBRK) == (void *)-1) {
                perror("sbrk");
                return 1;
            }
            report_sbrk("after_foreign");
        }
        big[i] = xmalloc(BIG_REQUEST);
        memset(big[i], 'b', BIG_REQUEST);
        snprintf(name, sizeof name, "big%02d", i);
        report_ptr(name, big[i], BIG_REQUEST);
    }
    for (int i = 0; i < NBIG; i += 3) {
        free(big[i]);
        snprintf(name, sizeof name, "big%02d", i);
        report_free(name);
    }
    snapshot_mallinfo2();
    printf("@ mallinfo2 %zu %zu %zu %zu\n", mi2_buf[0], mi2_buf[1], mi2_buf[2], mi2_buf[3]);
    CHECKPOINT(1);

    for (int i = 1; i < NBIG; i += 3)
        free(big[i]);
    free(p);
    return 0;
}
