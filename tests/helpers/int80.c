/* Reads a file with 32-bit syscalls (int $0x80) from a 64-bit process.
 * The ia32 ABI takes 32-bit pointers, so the path and buffers live in
 * memory mapped below 4 GiB. Prints the bytes read; exits non-zero on any
 * failure.
 *
 *   int80 PATH        open, read until EOF, pread64, mmap2, close: all ia32
 *   int80 PATH mixed  x86-64 open, ia32 reads until EOF, x86-64 close. Each
 *                     ia32 read also carries the descriptor in edi, where an
 *                     x86-64 syscall 3 (close) would take its argument: a
 *                     sensor that decoded ia32 numbers as x86-64 ones would
 *                     see closes. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long sys32(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    /* The sixth argument goes in ebp, which the compiler may not give out:
     * pass it in r8 and swap it in around the call. */
    register long sixth __asm__("r8") = f;
    __asm__ volatile("push %%rbp\n\tmov %%r8, %%rbp\n\tint $0x80\n\tpop %%rbp"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e), "r"(sixth)
                     : "memory");
    return ret;
}

static int mixed(const char *path, char *low) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 4;
    long total = 0, n;
    while ((n = sys32(3 /* read */, fd, (long)(low + 4096), 65536, 0, fd, 0)) > 0) total += n;
    if (n == -38 && total == 0) return 4; /* ENOSYS: no IA32 emulation */
    if (n < 0) return 5;
    if (close(fd) != 0) return 8;
    printf("%ld\n", total);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char *low = mmap(0, 1 << 20, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED || strlen(argv[1]) > 4000) return 3;
    if (argc > 2 && strcmp(argv[2], "mixed") == 0) return mixed(argv[1], low);
    strcpy(low, argv[1]);
    long fd = sys32(5 /* open */, (long)low, 0 /* O_RDONLY */, 0, 0, 0, 0);
    if (fd < 0) return 4;
    long total = 0, n;
    while ((n = sys32(3 /* read */, fd, (long)(low + 4096), 65536, 0, 0, 0)) > 0) total += n;
    if (n < 0) return 5;
    n = sys32(180 /* pread64 */, fd, (long)(low + 4096), 4096, 0, 0, 0);
    if (n != 4096) return 6;
    total += n;
    long addr = sys32(192 /* mmap2 */, 0, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr < 0 && addr > -4096) return 7;
    if (sys32(6 /* close */, fd, 0, 0, 0, 0, 0) != 0) return 8;
    printf("%ld\n", total);
    return 0;
}
