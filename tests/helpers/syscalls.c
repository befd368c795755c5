/* Issues exactly the syscalls a test names, by number through syscall(2),
 * so that no libc or language runtime can swap one for another (glibc's
 * open() is openat, CPython's os.preadv is preadv2, os.dup is
 * fcntl(F_DUPFD_CLOEXEC)). Verify with `strace -f` when in doubt.
 *
 *   syscalls GET READ PATH
 *
 * GET is how this process comes to hold a descriptor of PATH:
 *   open openat openat2 open_by_handle_at creat
 *                      the open itself (creat truncates PATH: READ none)
 *   dup dup2 dup3 dupfd dupfd_cloexec
 *                      openat, then the duplicate; the original is closed
 *                      before any read, so every read goes through the copy
 *   recvmsg recvmmsg   a child opens PATH and passes it over a unix socket
 *   pidfd_getfd        a child opens PATH and waits; we take a copy
 *   fanotify           fanotify_init + a FAN_OPEN mark on PATH; a child
 *                      opens it; we read through the event's descriptor
 * In the last four modes this process never opens PATH itself.
 *
 * READ is how it reads the descriptor, then closes it with close(2):
 *   read               read(2) of 64 KiB until end of file
 *   readv              readv(2) of two 32 KiB buffers until end of file
 *   pread64 preadv preadv2
 *                      the second half of the file only, 64 KiB a call at
 *                      explicit offsets (a misdecoded offset shows in the
 *                      coverage)
 *   preadv2_pos        preadv2 with offset -1 (the file position) until end
 *   aio_pread aio_preadv
 *                      Linux AIO: one io_submit(2) of eight IOCB_CMD_PREAD
 *                      (or IOCB_CMD_PREADV, two vectors each) control
 *                      blocks reading the second half of the file, 64 KiB
 *                      each at explicit offsets, the last one asking for
 *                      128 KiB (past the end: it returns 64 KiB), then
 *                      io_getevents(2) for all eight; CALLS counts blocks
 *   mmap               mmap(2) of the whole file, PROT_READ, MAP_PRIVATE,
 *                      every page touched
 *   none               nothing
 *
 * Prints "BYTES CALLS" (bytes returned and read calls made, end-of-file
 * calls included). Exit codes: 0 done; 2 usage; any other: the step that
 * failed (stderr names it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"

#define CHUNK 65536

static void fail(int code, const char *what) {
    fprintf(stderr, "syscalls: %s failed: %s\n", what, strerror(errno));
    exit(code);
}

static int check(long ret, int code, const char *what) {
    if (ret < 0) fail(code, what);
    return (int)ret;
}

static int sys_openat(const char *path) {
    return check(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY), 10, "openat");
}

/* A child opens PATH and sends the descriptor; we receive it with recvmsg
 * or recvmmsg, called by number. */
static int received(const char *path, int mmsg) {
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 21, "socketpair");
    pid_t child = check(fork(), 22, "fork");
    if (child == 0) {
        if (send_fd(sv[1], sys_openat(path)) != 0) fail(20, "sendmsg");
        _exit(0);
    }
    char byte;
    struct iovec iov = {&byte, 1};
    char control[CMSG_SPACE(sizeof(int))];
    struct mmsghdr m = {0};
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
    m.msg_hdr.msg_control = control;
    m.msg_hdr.msg_controllen = sizeof(control);
    if (mmsg)
        check(syscall(SYS_recvmmsg, sv[0], &m, 1, 0, NULL), 23, "recvmmsg");
    else
        check(syscall(SYS_recvmsg, sv[0], &m.msg_hdr, 0), 23, "recvmsg");
    int status;
    if (waitpid(child, &status, 0) != child || status != 0) fail(24, "the sending child");
    struct cmsghdr *c = CMSG_FIRSTHDR(&m.msg_hdr);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS) fail(25, "SCM_RIGHTS");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/* A child opens PATH and waits; we take its descriptor with pidfd_getfd. */
static int grabbed(const char *path, pid_t *holder, int *release) {
    int ready[2], go[2];
    check(pipe(ready), 30, "pipe");
    check(pipe(go), 30, "pipe");
    pid_t child = check(fork(), 31, "fork");
    if (child == 0) {
        close(go[1]);
        int fd = sys_openat(path);
        char c;
        if (write(ready[1], &fd, sizeof(fd)) != sizeof(fd)) _exit(1);
        _exit(read(go[0], &c, 1) < 0);
    }
    int target;
    if (read(ready[0], &target, sizeof(target)) != sizeof(target)) fail(32, "the holder");
    int pidfd = check(syscall(SYS_pidfd_open, child, 0), 33, "pidfd_open");
    int fd = check(syscall(SYS_pidfd_getfd, pidfd, target, 0), 34, "pidfd_getfd");
    close(pidfd);
    close(go[0]);
    *holder = child;
    *release = go[1];
    return fd;
}

/* fanotify hands us a descriptor of the file a child opens. */
static int from_fanotify(const char *path) {
    int group = check(syscall(SYS_fanotify_init, FAN_CLASS_NOTIF, O_RDONLY), 40, "fanotify_init");
    check(fanotify_mark(group, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, path), 41, "fanotify_mark");
    pid_t child = check(fork(), 42, "fork");
    if (child == 0) _exit(close(sys_openat(path)) != 0);
    struct fanotify_event_metadata ev;
    if (read(group, &ev, sizeof(ev)) < (long)sizeof(ev)) fail(43, "reading the fanotify event");
    if (ev.fd < 0) fail(44, "the event's descriptor");
    int status;
    if (waitpid(child, &status, 0) != child || status != 0) fail(45, "the opening child");
    close(group);
    return ev.fd;
}

/* Linux AIO reads of the second half of the file, one io_submit. */
static void aio_reads(int fd, long size, int vectored, long *bytes, long *calls) {
    enum { N = 8 };
    static char buf[2 * CHUNK];
    aio_context_t ctx = 0;
    check(syscall(SYS_io_setup, N, &ctx), 60, "io_setup");
    struct iocb cbs[N], *ptrs[N];
    struct iovec iovs[N][2];
    memset(cbs, 0, sizeof(cbs));
    for (int i = 0; i < N; i++) {
        /* The last block asks for twice as much: past the end of file. */
        long len = i == N - 1 ? 2 * CHUNK : CHUNK;
        cbs[i].aio_fildes = fd;
        cbs[i].aio_offset = size / 2 + (long)i * CHUNK;
        if (vectored) {
            iovs[i][0] = (struct iovec){buf, CHUNK / 2};
            iovs[i][1] = (struct iovec){buf + CHUNK / 2, len - CHUNK / 2};
            cbs[i].aio_lio_opcode = IOCB_CMD_PREADV;
            cbs[i].aio_buf = (uintptr_t)iovs[i];
            cbs[i].aio_nbytes = 2;
        } else {
            cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
            cbs[i].aio_buf = (uintptr_t)buf;
            cbs[i].aio_nbytes = len;
        }
        ptrs[i] = &cbs[i];
    }
    long submitted = check(syscall(SYS_io_submit, ctx, N, ptrs), 61, "io_submit");
    if (submitted != N) fail(62, "io_submit of every block");
    struct io_event events[N];
    long done = 0;
    while (done < N)
        done += check(syscall(SYS_io_getevents, ctx, N - done, N - done, events + done, NULL), 63,
                      "io_getevents");
    for (int i = 0; i < N; i++) {
        if (events[i].res < 0) {
            errno = (int)-events[i].res;
            fail(64, "an AIO read");
        }
        *bytes += events[i].res, (*calls)++;
    }
    check(syscall(SYS_io_destroy, ctx), 65, "io_destroy");
}

static int get(const char *how, const char *path, pid_t *holder, int *release) {
    if (strcmp(how, "open") == 0)
        return check(syscall(SYS_open, path, O_RDONLY), 11, "open");
    if (strcmp(how, "openat") == 0) return sys_openat(path);
    if (strcmp(how, "openat2") == 0) {
        struct open_how oh = {.flags = O_RDONLY};
        return check(syscall(SYS_openat2, AT_FDCWD, path, &oh, sizeof(oh)), 12, "openat2");
    }
    if (strcmp(how, "creat") == 0)
        return check(syscall(SYS_creat, path, 0644), 13, "creat");
    if (strcmp(how, "open_by_handle_at") == 0) {
        struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
        h->handle_bytes = MAX_HANDLE_SZ;
        int mount_id;
        check(name_to_handle_at(AT_FDCWD, path, h, &mount_id, 0), 14, "name_to_handle_at");
        /* Any descriptor on the same mount will do: the file's directory. */
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash == NULL) fail(14, "a path with a directory");
        *slash = 0;
        int mfd = check(syscall(SYS_openat, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY), 14, "the directory");
        int fd = check(syscall(SYS_open_by_handle_at, mfd, h, O_RDONLY), 15, "open_by_handle_at");
        close(mfd);
        return fd;
    }
    if (strcmp(how, "recvmsg") == 0) return received(path, 0);
    if (strcmp(how, "recvmmsg") == 0) return received(path, 1);
    if (strcmp(how, "pidfd_getfd") == 0) return grabbed(path, holder, release);
    if (strcmp(how, "fanotify") == 0) return from_fanotify(path);

    int orig = sys_openat(path), fd;
    if (strcmp(how, "dup") == 0)
        fd = syscall(SYS_dup, orig);
    else if (strcmp(how, "dup2") == 0)
        fd = syscall(SYS_dup2, orig, 50);
    else if (strcmp(how, "dup3") == 0)
        fd = syscall(SYS_dup3, orig, 51, O_CLOEXEC);
    else if (strcmp(how, "dupfd") == 0)
        fd = syscall(SYS_fcntl, orig, F_DUPFD, 60);
    else if (strcmp(how, "dupfd_cloexec") == 0)
        fd = syscall(SYS_fcntl, orig, F_DUPFD_CLOEXEC, 70);
    else {
        fprintf(stderr, "syscalls: unknown GET %s\n", how);
        exit(2);
    }
    check(fd, 16, how);
    check(syscall(SYS_close, orig), 17, "close of the original");
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: syscalls GET READ PATH\n");
        return 2;
    }
    const char *how = argv[2], *path = argv[3];
    pid_t holder = 0;
    int release = -1;
    int fd = get(argv[1], path, &holder, &release);
    struct stat st;
    check(fstat(fd, &st), 50, "fstat");
    long size = st.st_size, bytes = 0, calls = 0, n;
    static char buf[CHUNK];
    struct iovec iov[2] = {{buf, CHUNK / 2}, {buf + CHUNK / 2, CHUNK / 2}};
    if (strcmp(how, "read") == 0) {
        do {
            n = check(syscall(SYS_read, fd, buf, CHUNK), 51, "read");
            bytes += n, calls++;
        } while (n > 0);
    } else if (strcmp(how, "readv") == 0) {
        do {
            n = check(syscall(SYS_readv, fd, iov, 2), 52, "readv");
            bytes += n, calls++;
        } while (n > 0);
    } else if (strcmp(how, "preadv2_pos") == 0) {
        do {
            n = check(syscall(SYS_preadv2, fd, iov, 2, -1L, -1L, 0), 53, "preadv2");
            bytes += n, calls++;
        } while (n > 0);
    } else if (strcmp(how, "pread64") == 0 || strcmp(how, "preadv") == 0 ||
               strcmp(how, "preadv2") == 0) {
        for (long off = size / 2; off < size; off += CHUNK) {
            if (strcmp(how, "preadv") == 0)
                n = syscall(SYS_preadv, fd, iov, 2, off, 0L);
            else if (strcmp(how, "pread64") == 0)
                n = syscall(SYS_pread64, fd, buf, CHUNK, off);
            else
                n = syscall(SYS_preadv2, fd, iov, 2, off, 0L, 0);
            check(n, 54, how);
            bytes += n, calls++;
        }
    } else if (strcmp(how, "aio_pread") == 0 || strcmp(how, "aio_preadv") == 0) {
        aio_reads(fd, size, strcmp(how, "aio_preadv") == 0, &bytes, &calls);
    } else if (strcmp(how, "mmap") == 0) {
        volatile char *m = (char *)syscall(SYS_mmap, NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) fail(55, "mmap");
        long sum = 0;
        for (long i = 0; i < size; i += 4096) sum += m[i];
        (void)sum;
    } else if (strcmp(how, "none") != 0) {
        fprintf(stderr, "syscalls: unknown READ %s\n", how);
        return 2;
    }
    check(syscall(SYS_close, fd), 56, "close");
    if (holder > 0) {
        close(release);
        waitpid(holder, NULL, 0);
    }
    printf("%ld %ld\n", bytes, calls);
    return 0;
}
