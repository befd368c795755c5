/* Raw io_uring (io_uring_setup, io_uring_enter, io_uring_register and the
 * mmap'd rings; no liburing), for tests/tests/async_io.rs:
 *
 *   uring PATH
 *
 * opens PATH with IORING_OP_OPENAT, then reads it with one request at a
 * time, each waited for:
 *
 *   READ        65536 bytes at 0
 *   READV       2 x 16384 bytes at 131072
 *   READ_FIXED  65536 bytes at 524288 (a registered buffer)
 *   READ        8192 bytes at offset -1 after lseek(fd, 786432)
 *   READ        4096 bytes at offset -1 (the position the last one left)
 *   READ        4096 bytes at 1048576 (the end of a 1 MiB file: 0 bytes)
 *
 * and closes the descriptor with close(2). Prints "pid P", "open FD" and
 * one "OP RESULT" line per read. Exit 77: io_uring is not available to
 * this process (not built in, or kernel.io_uring_disabled).
 *
 *   uring --create PATH
 *
 * creates PATH with IORING_OP_OPENAT (O_CREAT | O_EXCL | O_WRONLY, 0644),
 * prints "pid P" and "open FD", and closes it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void setup(struct ring *r)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r->fd = syscall(__NR_io_uring_setup, 8, &p);
    if (r->fd < 0) {
        if (errno == ENOSYS || errno == EPERM) {
            fprintf(stderr, "io_uring_setup: %s\n", strerror(errno));
            exit(77);
        }
        die("io_uring_setup");
    }
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        die("mmap");
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

/* Submits one request and waits for its completion; returns its result. */
static int submit(struct ring *r, const struct io_uring_sqe *sqe)
{
    unsigned tail = *r->sq_tail;
    unsigned idx = tail & *r->sq_mask;
    r->sqes[idx] = *sqe;
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        die("io_uring_enter");
    unsigned head = *r->cq_head;
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "no completion\n");
        exit(1);
    }
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return res;
}

static struct io_uring_sqe request(int op, int fd, uint64_t addr, uint32_t len, uint64_t off)
{
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof sqe);
    sqe.opcode = op;
    sqe.fd = fd;
    sqe.addr = addr;
    sqe.len = len;
    sqe.off = off;
    return sqe;
}

static char buf[65536], fixed[65536], vec_a[16384], vec_b[16384];

static void read_op(struct ring *r, const char *name, struct io_uring_sqe sqe)
{
    int res = submit(r, &sqe);
    if (res < 0) {
        fprintf(stderr, "%s: %s\n", name, strerror(-res));
        exit(1);
    }
    printf("%s %d\n", name, res);
}

int main(int argc, char **argv)
{
    int create = argc == 3 && strcmp(argv[1], "--create") == 0;
    if (argc != 2 && !create) {
        fprintf(stderr, "usage: uring [--create] PATH\n");
        return 2;
    }
    const char *path = argv[argc - 1];
    struct ring r;
    setup(&r);
    struct iovec reg = {fixed, sizeof fixed};
    if (syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_BUFFERS, &reg, 1) < 0)
        die("io_uring_register");
    printf("pid %d\n", getpid());

    struct io_uring_sqe open = request(IORING_OP_OPENAT, AT_FDCWD, (uintptr_t)path, 0, 0);
    open.open_flags = create ? O_CREAT | O_EXCL | O_WRONLY : O_RDONLY;
    open.len = create ? 0644 : 0;
    int fd = submit(&r, &open);
    if (fd < 0) {
        fprintf(stderr, "openat: %s\n", strerror(-fd));
        return 1;
    }
    printf("open %d\n", fd);
    if (create) {
        if (syscall(SYS_close, fd) != 0)
            die("close");
        fflush(stdout);
        return 0;
    }

    read_op(&r, "read", request(IORING_OP_READ, fd, (uintptr_t)buf, 65536, 0));
    struct iovec iov[2] = {{vec_a, sizeof vec_a}, {vec_b, sizeof vec_b}};
    read_op(&r, "readv", request(IORING_OP_READV, fd, (uintptr_t)iov, 2, 131072));
    struct io_uring_sqe rf = request(IORING_OP_READ_FIXED, fd, (uintptr_t)fixed, 65536, 524288);
    rf.buf_index = 0;
    read_op(&r, "read_fixed", rf);
    if (lseek(fd, 786432, SEEK_SET) != 786432)
        die("lseek");
    read_op(&r, "read_pos", request(IORING_OP_READ, fd, (uintptr_t)buf, 8192, (uint64_t)-1));
    read_op(&r, "read_pos", request(IORING_OP_READ, fd, (uintptr_t)buf, 4096, (uint64_t)-1));
    read_op(&r, "read_end", request(IORING_OP_READ, fd, (uintptr_t)buf, 4096, 1048576));
    if (syscall(SYS_close, fd) != 0)
        die("close");
    fflush(stdout);
    return 0;
}
