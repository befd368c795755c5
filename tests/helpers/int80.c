/* Reads a file with 32-bit syscalls (int $0x80) from a 64-bit process.
 * The ia32 ABI takes 32-bit pointers, so the path and buffers live in
 * memory mapped below 4 GiB. Prints the bytes read.
 *
 * Exit codes: 0 done; 77 (and only 77) this kernel takes no ia32 syscalls
 * from a 64-bit process (a probe, `int $0x80` getpid in a child, returned
 * ENOSYS or killed it); anything else is a failure of the step it names.
 *
 *   int80 PATH        open, read until EOF, pread64, mmap2, close: all ia32
 *   int80 PATH mixed  x86-64 open, ia32 reads until EOF, x86-64 close. Each
 *                     ia32 read also carries the descriptor in edi, where an
 *                     x86-64 syscall 3 (close) would take its argument: a
 *                     sensor that decoded ia32 numbers as x86-64 ones would
 *                     see closes.
 *   int80 PATH recvmsg|socketcall
 *                     a child opens PATH and passes the descriptor over a
 *                     unix socket; this process receives it with the ia32
 *                     recvmsg (or socketcall(SYS_RECVMSG)) and reads it
 *                     with x86-64 reads: the receipt must make it a holder. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"

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
    if (fd < 0) return 12;
    long total = 0, n;
    while ((n = sys32(3 /* read */, fd, (long)(low + 4096), 65536, 0, fd, 0)) > 0) total += n;
    if (n < 0) return 5;
    if (close(fd) != 0) return 8;
    printf("%ld\n", total);
    return 0;
}

/* The ia32 (compat) layouts: 32-bit pointers and lengths. */
struct msghdr32 {
    uint32_t name, namelen, iov, iovlen, control, controllen, flags;
};
struct iovec32 {
    uint32_t base, len;
};
struct cmsg32 {
    uint32_t len;
    int32_t level, type, fd;
};

static int received(const char *path, char *low, int via_socketcall) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 9;
    pid_t child = fork();
    if (child == 0) {
        int fd = open(path, O_RDONLY);
        _exit(fd < 0 || send_fd(sv[1], fd) != 0 ? 1 : 0);
    }
    int status;
    if (waitpid(child, &status, 0) != child || status != 0) return 10;
    /* Everything the ia32 call reads or writes lives below 4 GiB. */
    struct msghdr32 *msg = (struct msghdr32 *)low;
    struct iovec32 *iov = (struct iovec32 *)(low + 64);
    struct cmsg32 *cmsg = (struct cmsg32 *)(low + 128);
    uint32_t *args = (uint32_t *)(low + 192);
    memset(low, 0, 256);
    iov->base = (uint32_t)(uintptr_t)(low + 256);
    iov->len = 1;
    msg->iov = (uint32_t)(uintptr_t)iov;
    msg->iovlen = 1;
    msg->control = (uint32_t)(uintptr_t)cmsg;
    msg->controllen = sizeof(*cmsg);
    long n;
    if (via_socketcall) {
        args[0] = sv[0];
        args[1] = (uint32_t)(uintptr_t)msg;
        args[2] = 0;
        n = sys32(102 /* socketcall */, 17 /* SYS_RECVMSG */, (long)args, 0, 0, 0, 0);
    } else {
        n = sys32(372 /* recvmsg */, sv[0], (long)msg, 0, 0, 0, 0);
    }
    if (n != 1 || cmsg->type != SCM_RIGHTS) return 11;
    int fd = cmsg->fd;
    char buf[65536];
    long total = 0;
    while ((n = read(fd, buf, sizeof(buf))) > 0) total += n;
    if (n < 0) return 5;
    printf("%ld\n", total);
    return 0;
}

/* The exit code that means only "unsupported here". */
#define UNSUPPORTED 77

/* Whether the kernel runs `int $0x80` from a 64-bit process: in a child,
 * so that a kernel that refuses it with a fault (ia32_emulation=0 on 6.7+)
 * kills the child, not us. */
static int ia32_supported(void) {
    pid_t child = fork();
    if (child < 0) return -1;
    if (child == 0) {
        long pid = sys32(20 /* getpid */, 0, 0, 0, 0, 0, 0);
        _exit(pid == getpid() ? 0 : pid == -38 /* ENOSYS */ ? 1 : 2);
    }
    int status;
    if (waitpid(child, &status, 0) != child) return -1;
    if (WIFSIGNALED(status)) return 0;
    if (!WIFEXITED(status)) return -1;
    switch (WEXITSTATUS(status)) {
    case 0: return 1;
    case 1: return 0;
    default: return -1;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    switch (ia32_supported()) {
    case 0: return UNSUPPORTED;
    case 1: break;
    default: return 13; /* the probe itself failed: a failure, not a skip */
    }
    char *low = mmap(0, 1 << 20, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED || strlen(argv[1]) > 4000) return 3;
    if (argc > 2 && strcmp(argv[2], "mixed") == 0) return mixed(argv[1], low);
    if (argc > 2 && strcmp(argv[2], "recvmsg") == 0) return received(argv[1], low, 0);
    if (argc > 2 && strcmp(argv[2], "socketcall") == 0) return received(argv[1], low, 1);
    strcpy(low, argv[1]);
    long fd = sys32(5 /* open */, (long)low, 0 /* O_RDONLY */, 0, 0, 0, 0);
    if (fd < 0) return 14;
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
