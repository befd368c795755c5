/* io_uring writes, sends and a connect by a process that read watched
 * bytes with read(2), one request at a time, each waited for (raw rings:
 * uring.h), for tests/tests/async_io.rs and tests/tests/vm.rs. Prints
 * "pid P" and "port P" first, then one "OP RESULT" line per request.
 * Exit 77: io_uring is not available to this process.
 *
 *   uring_sends SOURCE OUT
 *
 * Before it reads anything, listens on 127.0.0.1 (an ephemeral port) and
 * forks the receiver: a child that accepts one connection and reads it to
 * its end (it took no weights: nothing it does is followed). Then reads
 * the first 131072 bytes of SOURCE with read(2), and, with io_uring:
 *
 *   OUT (created; registered as fixed file 0 too; 64 KiB and 128 KiB
 *   buffers registered):
 *     WRITE         65536 bytes at 0
 *     WRITEV        2 x 16384 bytes at 65536 (IOSQE_ASYNC: completed by
 *                   an io-wq thread)
 *     WRITE_FIXED   65536 bytes at 98304, through fixed file 0
 *   OUT.vfixed (created):
 *     WRITEV_FIXED  2 x 16384 bytes at 0 (Linux 6.15+: prints
 *                   "writev_fixed -22" where the kernel lacks it)
 *   a TCP socket:
 *     CONNECT       to the listener (prints "connect 0")
 *     SEND          65536 bytes
 *     SENDMSG       2 x 32768 bytes (IOSQE_ASYNC)
 *     SEND_ZC       131072 bytes (its notification waited for)
 *     SENDMSG_ZC    2 x 131072 bytes
 *
 * then closes the socket and prints the receiver's "received N".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "uring.h"

/* Not in older headers (Linux 6.15). */
#define OP_WRITEV_FIXED 61

#define TAKEN 131072

static char buf[1 << 20];

/* Submits one request and waits for its completion, and for its
 * notification when the completion says more follows (a zero-copy
 * send's); returns the first result. */
static int submit_zc(struct ring *r, const struct io_uring_sqe *sqe)
{
    unsigned tail = *r->sq_tail;
    unsigned idx = tail & *r->sq_mask;
    r->sqes[idx] = *sqe;
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    unsigned submit = 1;
    int res = 0, more = 1, first = 1;
    while (more) {
        if (syscall(__NR_io_uring_enter, r->fd, submit, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
            die("io_uring_enter");
        submit = 0;
        unsigned head = *r->cq_head;
        while (head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
            struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
            if (first) {
                res = cqe->res;
                more = cqe->flags & IORING_CQE_F_MORE;
                first = 0;
            } else if (cqe->flags & IORING_CQE_F_NOTIF) {
                more = 0;
            }
            head++;
        }
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    }
    return res;
}

/* The receiver: accepts one connection, reads it to its end, prints the
 * count. */
static void receive(int listener)
{
    int conn = accept(listener, NULL, NULL);
    if (conn < 0)
        die("accept");
    static char sink[65536];
    long total = 0;
    for (;;) {
        ssize_t n = read(conn, sink, sizeof sink);
        if (n < 0)
            die("read socket");
        if (n == 0)
            break;
        total += n;
    }
    printf("received %ld\n", total);
    exit(0);
}

static void take(const char *source)
{
    int fd = open(source, O_RDONLY);
    if (fd < 0)
        die(source);
    long got = 0;
    while (got < TAKEN) {
        ssize_t n = read(fd, buf + got, TAKEN - got);
        if (n <= 0)
            die("read source");
        got += n;
    }
    close(fd);
}

static void write_file(struct ring *r, const char *out)
{
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die(out);
    ring_register(r, IORING_REGISTER_FILES, &fd, 1);
    struct io_uring_sqe sqe = request(IORING_OP_WRITE, fd, (uintptr_t)buf, 65536, 0);
    checked("write", submit(r, &sqe));
    struct iovec iov[2] = {{buf, 16384}, {buf + 16384, 16384}};
    sqe = request(IORING_OP_WRITEV, fd, (uintptr_t)iov, 2, 65536);
    sqe.flags = IOSQE_ASYNC;
    checked("writev", submit(r, &sqe));
    sqe = request(IORING_OP_WRITE_FIXED, 0, (uintptr_t)buf, 65536, 98304);
    sqe.flags = IOSQE_FIXED_FILE;
    sqe.buf_index = 0;
    checked("write_fixed", submit(r, &sqe));
    close(fd);

    char vfixed[4096];
    snprintf(vfixed, sizeof vfixed, "%s.vfixed", out);
    fd = open(vfixed, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die(vfixed);
    sqe = request(OP_WRITEV_FIXED, fd, (uintptr_t)iov, 2, 0);
    sqe.buf_index = 0;
    int res = submit(r, &sqe);
    if (res == -EINVAL)
        printf("writev_fixed %d\n", res);
    else
        checked("writev_fixed", res);
    close(fd);
}

static void send_all(struct ring *r, const struct sockaddr_in *to)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    struct io_uring_sqe sqe = request(IORING_OP_CONNECT, s, (uintptr_t)to, 0, sizeof *to);
    checked("connect", submit(r, &sqe));
    sqe = request(IORING_OP_SEND, s, (uintptr_t)buf, 65536, 0);
    checked("send", submit(r, &sqe));
    struct iovec iov[2] = {{buf, 32768}, {buf + 32768, 32768}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    sqe = request(IORING_OP_SENDMSG, s, (uintptr_t)&msg, 1, 0);
    sqe.flags = IOSQE_ASYNC;
    checked("sendmsg", submit(r, &sqe));
    sqe = request(IORING_OP_SEND_ZC, s, (uintptr_t)buf, 131072, 0);
    checked("send_zc", submit_zc(r, &sqe));
    struct iovec big[2] = {{buf, 131072}, {buf + 131072, 131072}};
    struct msghdr zc = {.msg_iov = big, .msg_iovlen = 2};
    sqe = request(IORING_OP_SENDMSG_ZC, s, (uintptr_t)&zc, 1, 0);
    checked("sendmsg_zc", submit_zc(r, &sqe));
    close(s);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: see the comment at the top of uring_sends.c\n");
        return 2;
    }
    struct ring r;
    ring_setup(&r);
    struct iovec reg = {buf, 131072};
    ring_register(&r, IORING_REGISTER_BUFFERS, &reg, 1);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) ||
        listen(listener, 1) || getsockname(listener, (struct sockaddr *)&addr, &len))
        die("listen");
    printf("pid %d\nport %d\n", getpid(), ntohs(addr.sin_port));
    fflush(stdout);
    pid_t receiver = fork();
    if (receiver < 0)
        die("fork");
    if (receiver == 0)
        receive(listener);
    close(listener);

    take(argv[1]);
    write_file(&r, argv[2]);
    send_all(&r, &addr);
    fflush(stdout);
    int status;
    if (waitpid(receiver, &status, 0) != receiver || !WIFEXITED(status) || WEXITSTATUS(status))
        die("receiver");
    return 0;
}
