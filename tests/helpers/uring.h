/* Raw io_uring (io_uring_setup, io_uring_enter and the mmap'd rings; no
 * liburing) for the helpers that drive it: one request at a time, each
 * waited for. A process io_uring is not available to exits 77 (not built
 * in, or kernel.io_uring_disabled). */
#ifndef URING_H
#define URING_H

#include <errno.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static __attribute__((unused)) void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Prints "NAME RES" for a request's result; exits 1 with its error if it
 * failed. */
static __attribute__((unused)) int checked(const char *name, int res)
{
    if (res < 0) {
        fprintf(stderr, "%s: %s\n", name, strerror(-res));
        exit(1);
    }
    printf("%s %d\n", name, res);
    return res;
}

static void ring_setup(struct ring *r)
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

/* io_uring_register(2); dies on failure. */
static __attribute__((unused)) void ring_register(struct ring *r, unsigned op, const void *arg, unsigned n)
{
    if (syscall(__NR_io_uring_register, r->fd, op, arg, n) < 0)
        die("io_uring_register");
}

/* Puts one request on the submission ring (not yet submitted). */
static void push(struct ring *r, const struct io_uring_sqe *sqe)
{
    unsigned tail = *r->sq_tail;
    unsigned idx = tail & *r->sq_mask;
    r->sqes[idx] = *sqe;
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

/* Submits `n` pushed requests and waits for a completion; returns its
 * result, and its user_data in `*data`. */
static int enter_and_reap(struct ring *r, unsigned n, uint64_t *data)
{
    if (syscall(__NR_io_uring_enter, r->fd, n, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        die("io_uring_enter");
    unsigned head = *r->cq_head;
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "no completion\n");
        exit(1);
    }
    int res = r->cqes[head & *r->cq_mask].res;
    *data = r->cqes[head & *r->cq_mask].user_data;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return res;
}

/* Submits one request and waits for its completion; returns its result. */
static int submit(struct ring *r, const struct io_uring_sqe *sqe)
{
    uint64_t data;
    push(r, sqe);
    return enter_and_reap(r, 1, &data);
}

/* Submits one request with IOSQE_CQE_SKIP_SUCCESS (its success posts no
 * completion), linked to a NOP that posts one once it ran, and waits for
 * the NOP: returns 0 when the request succeeded (its result is never
 * known), else its error. */
static __attribute__((unused)) int submit_skip_success(struct ring *r,
                                                       const struct io_uring_sqe *sqe)
{
    const uint64_t nop_data = 0x5c1bULL;
    struct io_uring_sqe req = *sqe, nop;
    req.flags |= IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK;
    req.user_data = 0;
    memset(&nop, 0, sizeof nop);
    nop.opcode = IORING_OP_NOP;
    nop.user_data = nop_data;
    push(r, &req);
    push(r, &nop);
    int res = 0;
    for (unsigned n = 2;; n = 0) {
        uint64_t data;
        int got = enter_and_reap(r, n, &data);
        if (data == nop_data)
            return res;
        res = got; /* the request failed: its completion is posted */
    }
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

/* A splice of `len` bytes from `fd_in` at `off_in` (-1: its position;
 * with SPLICE_F_FD_IN_FIXED in `flags`, a fixed-file slot) into the pipe
 * `pipe_out`. */
static __attribute__((unused)) struct io_uring_sqe splice_request(int fd_in, int64_t off_in, int pipe_out, uint32_t len,
                                          uint32_t flags)
{
    struct io_uring_sqe sqe = request(IORING_OP_SPLICE, pipe_out, 0, len, (uint64_t)-1);
    sqe.splice_fd_in = fd_in;
    sqe.splice_off_in = (uint64_t)off_in;
    sqe.splice_flags = flags;
    return sqe;
}

#endif
