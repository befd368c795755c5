/* io_uring requests on a file, one at a time, each waited for (raw rings:
 * uring.h), for tests/tests/async_io.rs. Prints "pid P" first, then one
 * "OP RESULT" line per request. Exit 77: io_uring is not available to
 * this process.
 *
 *   uring PATH
 *
 * opens PATH with IORING_OP_OPENAT (prints "open FD"), then reads it:
 *
 *   READ        65536 bytes at 0
 *   READV       2 x 16384 bytes at 131072
 *   READ_FIXED  65536 bytes at 524288 (a registered buffer)
 *   READ        8192 bytes at offset -1 after lseek(fd, 786432)
 *   READ        4096 bytes at offset -1 (the position the last one left)
 *   READ        4096 bytes at 1048576 (the end of a 1 MiB file: 0 bytes)
 *
 * and closes the descriptor with close(2).
 *
 *   uring fixed-open PATH
 *
 * registers a sparse table of 4 fixed files, opens PATH into slot 2
 * (OPENAT with file_index 3; prints "open_slot RESULT") and reads it
 * through the slot (IOSQE_FIXED_FILE): READ 65536 bytes at 0, READ_FIXED
 * 65536 at 262144; opens it again into whichever slot is free
 * (IORING_FILE_INDEX_ALLOC; prints "open_alloc SLOT") and READs 16384
 * bytes at 524288 through that slot. No descriptor is ever made.
 *
 *   uring splice PATH
 *
 * opens PATH with open(2) and splices it into a pipe with IORING_OP_SPLICE,
 * draining the pipe after each (prints "splice MOVED DRAINED"): 65536
 * bytes at 0, 32768 at offset -1 after lseek(fd, 262144), and 16384 at
 * 524288 from the file registered as fixed slot 0 (SPLICE_F_FD_IN_FIXED).
 *
 *   uring skip-success PATH
 *
 * every request with IOSQE_CQE_SKIP_SUCCESS (a success posts no
 * completion; each is linked to a NOP that does, and prints "OP 0" once
 * that came): opens PATH with IORING_OP_OPENAT into the lowest free
 * descriptor (prints "fd FD"), reads 4096 bytes at 917504 with pread(2)
 * ("pread 4096"), then READ 65536 at 0, READV 2 x 16384 at 131072,
 * READ_FIXED 65536 at 524288, READ 8192 at offset -1 after lseek(fd,
 * 786432), and SPLICE 16384 at 655360 into a pipe, read empty ("drained
 * 16384"); to an O_TMPFILE file in /tmp (prints "out DEV INO"), WRITE
 * 65536 at 0 and WRITEV 2 x 32768 at 65536; to a unix socket pair (prints
 * "socket DEV INO"), SEND 16384, read out at the other end ("received
 * 16384").
 *
 *   uring --create PATH
 *
 * creates PATH with IORING_OP_OPENAT (O_CREAT | O_EXCL | O_WRONLY, 0644),
 * prints "open FD", and closes it.
 *
 * Tampering, each with one request (tests/tests/tamper.rs), printing
 * "OP RESULT" and exiting 1 if it failed; paths are relative to DIR, a
 * directory descriptor, with --dir DIR, else to the working directory;
 * with --linked, each request is linked (IOSQE_IO_HARDLINK) behind a 20 ms
 * IORING_OP_TIMEOUT, so that the kernel queues it only when that fires:
 *
 *   uring [--dir DIR] [--linked] rename OLD NEW
 *                                         IORING_OP_RENAMEAT (flags 0)
 *   uring [--dir DIR] unlink PATH         IORING_OP_UNLINKAT
 *   uring [--dir DIR] link OLD NEW        IORING_OP_LINKAT
 *   uring [--dir DIR] symlink TARGET PATH IORING_OP_SYMLINKAT
 *   uring [--dir DIR] write-open PATH     IORING_OP_OPENAT O_WRONLY, then
 *                                         IORING_OP_OPENAT2 O_WRONLY|O_TRUNC
 *                                         ("open FD", "open2 FD")
 *   uring [--dir DIR] ftruncate PATH      opens PATH O_RDWR with openat(2),
 *                                         IORING_OP_FTRUNCATE's it to 4096,
 *                                         then through fixed slot 0 to 0
 *                                         ("ftruncate 0", "ftruncate_fixed 0")
 *
 * A kernel without the opcode (IORING_OP_FTRUNCATE before 6.9: -EINVAL)
 * prints "OP unsupported" and exits 78.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "uring.h"

/* Linux 6.9's opcode; older headers lack it. */
#define OP_FTRUNCATE 55

static char buf[65536], fixed[65536], vec_a[16384], vec_b[16384];

static void register_buffer(struct ring *r)
{
    struct iovec reg = {fixed, sizeof fixed};
    ring_register(r, IORING_REGISTER_BUFFERS, &reg, 1);
}

static int plain(struct ring *r, const char *path)
{
    register_buffer(r);
    struct io_uring_sqe open = request(IORING_OP_OPENAT, AT_FDCWD, (uintptr_t)path, 0, 0);
    open.open_flags = O_RDONLY;
    int fd = checked("open", submit(r, &open));

    struct io_uring_sqe sqe = request(IORING_OP_READ, fd, (uintptr_t)buf, 65536, 0);
    checked("read", submit(r, &sqe));
    struct iovec iov[2] = {{vec_a, sizeof vec_a}, {vec_b, sizeof vec_b}};
    sqe = request(IORING_OP_READV, fd, (uintptr_t)iov, 2, 131072);
    checked("readv", submit(r, &sqe));
    sqe = request(IORING_OP_READ_FIXED, fd, (uintptr_t)fixed, 65536, 524288);
    sqe.buf_index = 0;
    checked("read_fixed", submit(r, &sqe));
    if (lseek(fd, 786432, SEEK_SET) != 786432)
        die("lseek");
    sqe = request(IORING_OP_READ, fd, (uintptr_t)buf, 8192, (uint64_t)-1);
    checked("read_pos", submit(r, &sqe));
    sqe = request(IORING_OP_READ, fd, (uintptr_t)buf, 4096, (uint64_t)-1);
    checked("read_pos", submit(r, &sqe));
    sqe = request(IORING_OP_READ, fd, (uintptr_t)buf, 4096, 1048576);
    checked("read_end", submit(r, &sqe));
    if (syscall(SYS_close, fd) != 0)
        die("close");
    return 0;
}

static int create_file(struct ring *r, const char *path)
{
    struct io_uring_sqe open = request(IORING_OP_OPENAT, AT_FDCWD, (uintptr_t)path, 0, 0);
    open.open_flags = O_CREAT | O_EXCL | O_WRONLY;
    open.len = 0644;
    int fd = checked("open", submit(r, &open));
    if (syscall(SYS_close, fd) != 0)
        die("close");
    return 0;
}

/* An OPENAT of `path` into fixed slot `file_index - 1` (or any free one). */
static struct io_uring_sqe open_into_slot(const char *path, uint32_t file_index)
{
    struct io_uring_sqe open = request(IORING_OP_OPENAT, AT_FDCWD, (uintptr_t)path, 0, 0);
    open.open_flags = O_RDONLY;
    open.file_index = file_index;
    return open;
}

/* A read through fixed slot `slot`. */
static struct io_uring_sqe fixed_read(int op, int slot, char *into, uint32_t len, uint64_t off)
{
    struct io_uring_sqe sqe = request(op, slot, (uintptr_t)into, len, off);
    sqe.flags = IOSQE_FIXED_FILE;
    return sqe;
}

static int fixed_open(struct ring *r, const char *path)
{
    register_buffer(r);
    int sparse[4] = {-1, -1, -1, -1};
    ring_register(r, IORING_REGISTER_FILES, sparse, 4);

    struct io_uring_sqe sqe = open_into_slot(path, 3);
    checked("open_slot", submit(r, &sqe));
    sqe = fixed_read(IORING_OP_READ, 2, buf, 65536, 0);
    checked("read", submit(r, &sqe));
    sqe = fixed_read(IORING_OP_READ_FIXED, 2, fixed, 65536, 262144);
    sqe.buf_index = 0;
    checked("read_fixed", submit(r, &sqe));

    sqe = open_into_slot(path, IORING_FILE_INDEX_ALLOC);
    int slot = checked("open_alloc", submit(r, &sqe));
    sqe = fixed_read(IORING_OP_READ, slot, buf, 16384, 524288);
    checked("read", submit(r, &sqe));
    return 0;
}

/* Splices, then reads the pipe empty; prints both counts. */
static void splice_and_drain(struct ring *r, struct io_uring_sqe sqe, int pipe_in)
{
    int moved = submit(r, &sqe);
    if (moved < 0) {
        fprintf(stderr, "splice: %s\n", strerror(-moved));
        exit(1);
    }
    int drained = 0;
    while (drained < moved) {
        ssize_t n = read(pipe_in, buf, sizeof buf);
        if (n <= 0)
            die("read pipe");
        drained += n;
    }
    printf("splice %d %d\n", moved, drained);
}

static int splice_file(struct ring *r, const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("open");
    int p[2];
    if (pipe(p))
        die("pipe");
    splice_and_drain(r, splice_request(fd, 0, p[1], 65536, 0), p[0]);
    if (lseek(fd, 262144, SEEK_SET) != 262144)
        die("lseek");
    splice_and_drain(r, splice_request(fd, -1, p[1], 32768, 0), p[0]);
    ring_register(r, IORING_REGISTER_FILES, &fd, 1);
    splice_and_drain(r, splice_request(0, 524288, p[1], 16384, SPLICE_F_FD_IN_FIXED), p[0]);
    return 0;
}

/* Prints "NAME 0" when a request submitted with IOSQE_CQE_SKIP_SUCCESS
 * succeeded; exits 1 with its error otherwise. */
static void skipped(struct ring *r, const char *name, const struct io_uring_sqe *sqe)
{
    checked(name, submit_skip_success(r, sqe));
}

/* Prints "NAME DEV INO" for descriptor `fd`. */
static void identity(const char *name, int fd)
{
    struct stat st;
    if (fstat(fd, &st))
        die("fstat");
    printf("%s %llu %llu\n", name, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

static int skip_success(struct ring *r, const char *path)
{
    register_buffer(r);
    /* The lowest free descriptor, which the open will take. */
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || close(fd))
        die("/dev/null");
    struct io_uring_sqe sqe = request(IORING_OP_OPENAT, AT_FDCWD, (uintptr_t)path, 0, 0);
    sqe.open_flags = O_RDONLY;
    skipped(r, "open", &sqe);
    if (fcntl(fd, F_GETFD) < 0)
        die("the open's descriptor");
    printf("fd %d\n", fd);
    if (pread(fd, buf, 4096, 917504) != 4096)
        die("pread");
    printf("pread 4096\n");

    sqe = request(IORING_OP_READ, fd, (uintptr_t)buf, 65536, 0);
    skipped(r, "read", &sqe);
    struct iovec iov[2] = {{vec_a, sizeof vec_a}, {vec_b, sizeof vec_b}};
    sqe = request(IORING_OP_READV, fd, (uintptr_t)iov, 2, 131072);
    skipped(r, "readv", &sqe);
    sqe = request(IORING_OP_READ_FIXED, fd, (uintptr_t)fixed, 65536, 524288);
    sqe.buf_index = 0;
    skipped(r, "read_fixed", &sqe);
    if (lseek(fd, 786432, SEEK_SET) != 786432)
        die("lseek");
    sqe = request(IORING_OP_READ, fd, (uintptr_t)buf, 8192, (uint64_t)-1);
    skipped(r, "read_pos", &sqe);

    int p[2];
    if (pipe(p))
        die("pipe");
    sqe = splice_request(fd, 655360, p[1], 16384, 0);
    skipped(r, "splice", &sqe);
    ssize_t drained = 0;
    while (drained < 16384) {
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n <= 0)
            die("read pipe");
        drained += n;
    }
    printf("drained %zd\n", drained);

    int out = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    if (out < 0)
        die("O_TMPFILE");
    identity("out", out);
    sqe = request(IORING_OP_WRITE, out, (uintptr_t)buf, 65536, 0);
    skipped(r, "write", &sqe);
    struct iovec two[2] = {{buf, 32768}, {buf + 32768, 32768}};
    sqe = request(IORING_OP_WRITEV, out, (uintptr_t)two, 2, 65536);
    skipped(r, "writev", &sqe);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        die("socketpair");
    identity("socket", sv[0]);
    sqe = request(IORING_OP_SEND, sv[0], (uintptr_t)buf, 16384, 0);
    skipped(r, "send", &sqe);
    drained = 0;
    while (drained < 16384) {
        ssize_t n = read(sv[1], buf, sizeof buf);
        if (n <= 0)
            die("read socket");
        drained += n;
    }
    printf("received %zd\n", drained);
    if (close(fd))
        die("close");
    return 0;
}

static int linked;

/* Submits `sqe` behind a 20 ms timeout it is hard-linked to; waits for
 * both; returns its result. */
static int submit_after_timeout(struct ring *r, const struct io_uring_sqe *sqe)
{
    static struct __kernel_timespec ts = {.tv_nsec = 20 * 1000 * 1000};
    struct io_uring_sqe timeout = request(IORING_OP_TIMEOUT, -1, (uintptr_t)&ts, 1, 0);
    timeout.flags = IOSQE_IO_HARDLINK;
    unsigned tail = *r->sq_tail;
    for (unsigned i = 0; i < 2; i++) {
        unsigned idx = (tail + i) & *r->sq_mask;
        r->sqes[idx] = i == 0 ? timeout : *sqe;
        r->sq_array[idx] = idx;
    }
    __atomic_store_n(r->sq_tail, tail + 2, __ATOMIC_RELEASE);
    unsigned head = *r->cq_head, to_submit = 2;
    /* A timeout firing ends the wait whatever the count asked for. */
    while (__atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) - head < 2) {
        if (syscall(__NR_io_uring_enter, r->fd, to_submit, 2, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
            die("io_uring_enter");
        to_submit = 0;
    }
    /* The timeout's (-ETIME) first, then the request's. */
    int res = r->cqes[(head + 1) & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 2, __ATOMIC_RELEASE);
    return res;
}

/* Submits a tampering request; prints "NAME RESULT". */
static int tamper_submit(struct ring *r, const char *name, struct io_uring_sqe *sqe)
{
    int res = linked ? submit_after_timeout(r, sqe) : submit(r, sqe);
    if (res == -EINVAL && sqe->opcode == OP_FTRUNCATE) {
        printf("%s unsupported\n", name);
        fflush(stdout);
        exit(78);
    }
    return checked(name, res);
}

static int tamper(struct ring *r, int dir, const char *op, char **args, int nargs)
{
    struct io_uring_sqe sqe;
    if (!strcmp(op, "rename") && nargs == 2) {
        /* fd: the old path's dirfd, len: the new path's, addr2 (off): the new path */
        sqe = request(IORING_OP_RENAMEAT, dir, (uintptr_t)args[0], dir, (uintptr_t)args[1]);
        tamper_submit(r, "rename", &sqe);
    } else if (!strcmp(op, "unlink") && nargs == 1) {
        sqe = request(IORING_OP_UNLINKAT, dir, (uintptr_t)args[0], 0, 0);
        tamper_submit(r, "unlink", &sqe);
    } else if (!strcmp(op, "link") && nargs == 2) {
        sqe = request(IORING_OP_LINKAT, dir, (uintptr_t)args[0], dir, (uintptr_t)args[1]);
        tamper_submit(r, "link", &sqe);
    } else if (!strcmp(op, "symlink") && nargs == 2) {
        /* fd: the link's dirfd; addr: the target; addr2: the link */
        sqe = request(IORING_OP_SYMLINKAT, dir, (uintptr_t)args[0], 0, (uintptr_t)args[1]);
        tamper_submit(r, "symlink", &sqe);
    } else if (!strcmp(op, "write-open") && nargs == 1) {
        sqe = request(IORING_OP_OPENAT, dir, (uintptr_t)args[0], 0, 0);
        sqe.open_flags = O_WRONLY;
        int fd = tamper_submit(r, "open", &sqe);
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = O_WRONLY | O_TRUNC;
        sqe = request(IORING_OP_OPENAT2, dir, (uintptr_t)args[0], sizeof how, (uintptr_t)&how);
        int fd2 = tamper_submit(r, "open2", &sqe);
        if (syscall(SYS_close, fd) != 0 || syscall(SYS_close, fd2) != 0)
            die("close");
    } else if (!strcmp(op, "ftruncate") && nargs == 1) {
        int fd = openat(dir, args[0], O_RDWR);
        if (fd < 0)
            die("openat");
        sqe = request(OP_FTRUNCATE, fd, 0, 0, 4096);
        tamper_submit(r, "ftruncate", &sqe);
        ring_register(r, IORING_REGISTER_FILES, &fd, 1);
        sqe = request(OP_FTRUNCATE, 0, 0, 0, 0);
        sqe.flags = IOSQE_FIXED_FILE;
        tamper_submit(r, "ftruncate_fixed", &sqe);
    } else {
        fprintf(stderr, "usage: see the comment at the top of uring.c\n");
        return 2;
    }
    return 0;
}

static const char *const TAMPER_OPS[] = {"rename", "unlink", "link", "symlink", "write-open",
                                         "ftruncate"};

int main(int argc, char **argv)
{
    int dir = AT_FDCWD, first = 1;
    if (argc > 3 && !strcmp(argv[1], "--dir")) {
        dir = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (dir < 0)
            die("open --dir");
        first = 3;
    }
    if (argc > first + 1 && !strcmp(argv[first], "--linked")) {
        linked = 1;
        first++;
    }
    for (size_t i = 0; argc > first && i < sizeof TAMPER_OPS / sizeof *TAMPER_OPS; i++) {
        if (!strcmp(argv[first], TAMPER_OPS[i])) {
            struct ring r;
            ring_setup(&r);
            printf("pid %d\n", getpid());
            int status = tamper(&r, dir, argv[first], argv + first + 1, argc - first - 1);
            fflush(stdout);
            return status;
        }
    }

    int (*mode)(struct ring *, const char *) = NULL;
    const char *path = NULL;
    if (argc == 2) {
        mode = plain;
        path = argv[1];
    } else if (argc == 3 && !strcmp(argv[1], "fixed-open")) {
        mode = fixed_open;
        path = argv[2];
    } else if (argc == 3 && !strcmp(argv[1], "--create")) {
        mode = create_file;
        path = argv[2];
    } else if (argc == 3 && !strcmp(argv[1], "splice")) {
        mode = splice_file;
        path = argv[2];
    } else if (argc == 3 && !strcmp(argv[1], "skip-success")) {
        mode = skip_success;
        path = argv[2];
    } else {
        fprintf(stderr, "usage: see the comment at the top of uring.c\n");
        return 2;
    }
    struct ring r;
    ring_setup(&r);
    printf("pid %d\n", getpid());
    int status = mode(&r, path);
    fflush(stdout);
    return status;
}
