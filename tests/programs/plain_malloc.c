/* Any C library's malloc: for telling glibc from others (tests/test_locate.py). */
#include <stdio.h>
#include <stdlib.h>

void checkpoint(int stage) { __asm__ __volatile__("" : : "r"(stage) : "memory"); }

int main(void) {
    void *p = malloc(100), *q = malloc(200);
    free(p);
    printf("@ ptr q %p\n", q);
    checkpoint(1);
    free(q);
    return 0;
}
