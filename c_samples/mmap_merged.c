/*
 * mmap_merged.c - mmapped chunks inside a mapping that does not start with one.
 *
 * Idea: the kernel merges an anonymous mapping with its anonymous neighbours of
 * the same protection, and places each new mapping right below the last one.
 * So a program's own mmap (here "own", 64 KiB, read-write) taken between two
 * mallocs big enough to be mmapped ends up in the middle of one merged mapping:
 *
 *     [ m2 (chunk) ][ own (not a chunk) ][ m1 (chunk) ]   <- one mapping
 *
 * After m2 come the program's own pages, so a walk from the mapping's start
 * stops there; m1 starts on a page further on.  "own" holds a decoy on its
 * second page: a header with IS_MMAPPED whose size runs past the mapping (it
 * must not be taken for a chunk).  m3 is a posix_memalign'd chunk below m2.
 *
 *   checkpoint 1: m1, m2, m3 allocated (glibc counts 3 in mp_.n_mmaps).
 *
 * Prints: @ ptr NAME ADDR REQUEST for m1, m2, m3; @ addr own ADDR (the
 * program's own mapping); @ n_mmaps 3.
 */
#include "sample.h"

#include <sys/mman.h>

#define OWN_SIZE (64 * 1024)

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* printf never mallocs a buffer */
    mi_open();                         /* malloc_info's snapshot at the checkpoint */
    void *small = xmalloc(100);        /* the main heap exists from the start */
    void *m1 = xmalloc(300000);
    char *own = mmap(NULL, OWN_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (own == MAP_FAILED)
        return 1;
    memset(own, 0x5a, OWN_SIZE);
    size_t decoy[2] = {0, ((size_t)1 << 30) | 2}; /* prev_size 0, size 1 GiB | IS_MMAPPED */
    memcpy(own + 4096, decoy, sizeof decoy);
    void *m2 = xmalloc(200000);
    void *m3 = NULL;
    if (posix_memalign(&m3, 65536, 150000) != 0)
        return 1;
    report_ptr("small", small, 100);
    report_ptr("m1", m1, 300000);
    report_ptr("m2", m2, 200000);
    report_ptr("m3", m3, 150000);
    report_addr("own", own);
    report_expect("m1", "mmapped");
    report_expect("m2", "mmapped");
    report_expect("m3", "mmapped");
    printf("@ n_mmaps 3\n");
    CHECKPOINT(1);
    return 0;
}
