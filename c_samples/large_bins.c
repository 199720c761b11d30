/*
 * large_bins.c - free chunks of chosen sizes sorted into the large bins, up to the last one.
 *
 * Idea: which large bin holds a chunk follows malloc.c's largebin_index: 64-byte wide bins
 * up to 0xc00, then 512, 4096, 32768 and 262144 bytes wide, and bin 126 for everything from
 * 0x80000 on.  Chunks bigger than a request can be (a request of 128 KiB or more gets its own
 * mmap) are made by freeing neighbours: each chunk below is a run of adjacent pieces of at most
 * 0x10000 bytes, freed one after the other, so each piece merges with the free one before it.
 * An in-use guard (malloc(16)) follows every run, so runs never merge with each other or top.
 * Then one malloc bigger than every free chunk ("sorter", 1 MiB: mmapped, after the sort)
 * takes every chunk out of the unsorted bin and puts it into its bin.
 *
 * Chunk sizes (the same on x86-64 and i386; requests are the size minus sizeof(size_t)):
 * 0x420 .. 0xc0000, chosen at the edges of the bins (see SIZES).  None of them fits in the
 * tcache (its largest default size is 0x410), so glibc 2.26 .. 2.44 all sort them the same way.
 *
 * Checkpoint 1: every chunk of SIZES free in its small or large bin; the unsorted bin empty.
 * Prints `@ ptr` for every piece and guard, `@ free` for every piece, and for each run
 * `@ freechunk NAME 0xCHUNK 0xSIZE`: the free chunk (its chunk address, not a user pointer)
 * that the run became.
 */
#include "sample.h"

static const size_t SIZES[] = {
    0x420, 0x440, 0x800, 0xb80, 0xc00, 0xc40, 0xe00, 0x1000, 0x2800, 0x2a00, 0x3000,
    0xa000, 0xb000, 0x10000, 0x18000, 0x20000, 0x28000, 0x40000, 0x7fff0, 0x80000, 0xc0000,
};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])
#define PIECE 0x10000 /* the largest piece: a request far below the 128 KiB mmap threshold */
#define MAX_PIECES 16

struct run {
    char name[16];
    size_t size;
    int npieces;
    void *pieces[MAX_PIECES];
};

static struct run runs[NSIZES];

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    mi_open();

    for (size_t i = 0; i < NSIZES; i++) {
        struct run *r = &runs[i];
        size_t left = SIZES[i];
        snprintf(r->name, sizeof r->name, "c%zx", SIZES[i]);
        r->size = SIZES[i];
        while (left) {
            size_t piece = left > PIECE ? PIECE : left;
            char name[32];
            if (left - piece != 0 && left - piece < 0x20) /* the rest must be a chunk of its own */
                piece -= 0x20;
            snprintf(name, sizeof name, "%s_%d", r->name, r->npieces);
            void *p = xmalloc(piece - sizeof(size_t));
            report_ptr(name, p, piece - sizeof(size_t));
            r->pieces[r->npieces++] = p;
            left -= piece;
        }
        char gname[32];
        snprintf(gname, sizeof gname, "guard%zu", i);
        report_ptr(gname, xmalloc(16), 16);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        struct run *r = &runs[i];
        for (int k = 0; k < r->npieces; k++) {
            char name[32];
            snprintf(name, sizeof name, "%s_%d", r->name, k);
            free(r->pieces[k]);
            report_free(name);
        }
        printf("@ freechunk %s 0x%" PRIxPTR " 0x%zx\n", r->name,
               (uintptr_t)r->pieces[0] - 2 * sizeof(size_t), r->size);
    }
    void *sorter = xmalloc(1 << 20);
    report_ptr("sorter", sorter, 1 << 20);

    CHECKPOINT(1);
    return 0;
}
