/* Stands in for a program linked with another allocator: it defines that allocator's
   entry point (the name comes from -DENTRY=je_malloc, tc_malloc, mi_malloc, mallocx, ...) and
   also calls glibc's malloc, so glibc's heap exists beside it (tests/test_other_allocators.py). */
#include <stdio.h>
#include <stdlib.h>

void checkpoint(int stage) { __asm__ __volatile__("" : : "r"(stage) : "memory"); }

__attribute__((noinline, used)) void *ENTRY(size_t n) { return malloc(n); }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0); /* every line out before the breakpoint, no stdio buffer chunk */
    void *p = ENTRY(100), *q = malloc(200);
    printf("@ ptr p %p\n@ ptr q %p\n", p, q);
    checkpoint(1);
    return 0;
}
