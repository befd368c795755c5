/* Writes, sends and connects of a process that has (or has not) read
 * watched bytes, each syscall issued by number through syscall(2) so that
 * no libc can swap one for another (glibc's send() is sendto, write() on a
 * socket stays write). Verify with `strace -f` when in doubt.
 *
 *   sends MODE SOURCE DEST
 *
 * First the destination is set up: DEST is a path opened with openat
 * (O_WRONLY | O_CREAT | O_TRUNC), or a TCP port on 127.0.0.1 the socket
 * connects to (socket + connect), or for sendto_unconnected a UDP port
 * (socket only). Then SOURCE is read whole with read(2) and closed: a
 * watched file makes this process one the sensor follows (an unwatched
 * one is the control). Only then MODE runs, so that the setup is never a
 * followed call:
 *   write pwrite64 writev pwritev pwritev2
 *                      four calls of 4096 bytes to the file DEST (the
 *                      vector ones: two 2048-byte vectors; the positioned
 *                      ones at offsets 0, 4096, ...)
 *   devnull            four write(2) calls of 4096 bytes to /dev/null (a
 *                      character device: DEST is ignored)
 *   connect            connect(2) to the TCP port DEST, nothing sent
 *   sendto sendmsg sendmmsg
 *                      four calls of 4096 bytes on the connected socket
 *                      (sendmsg: two 2048-byte vectors; sendmmsg: two
 *                      messages of 2048 bytes)
 *   sendto_unconnected four sendto(2) calls of 4096 bytes on an unconnected
 *                      UDP socket, each naming 127.0.0.1:DEST
 *
 * Then prints one line, `fd=FD bytes=BYTES calls=CALLS major=M minor=N
 * ino=INO` (the destination descriptor, what the calls returned in total
 * and how many there were, the descriptor's fstat identity), flushes it
 * with a single write to stdout, and waits until stdin reaches end of file
 * before it exits, so that the descriptor is still open while the agent
 * handles the records. Exit codes: 0 done; 2 usage; any other: the step
 * that failed (stderr names it). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#define CALLS 4
#define SIZE 4096
#define HALF (SIZE / 2)

static void fail(int code, const char *what) {
    fprintf(stderr, "sends: %s failed: %s\n", what, strerror(errno));
    exit(code);
}

static long check(long ret, int code, const char *what) {
    if (ret < 0) fail(code, what);
    return ret;
}

static struct sockaddr_in loopback(const char *port) {
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static int tcp_socket(void) {
    return (int)check(syscall(SYS_socket, AF_INET, SOCK_STREAM, 0), 10, "socket");
}

static void tcp_connect(int fd, const char *port) {
    struct sockaddr_in sa = loopback(port);
    check(syscall(SYS_connect, fd, &sa, sizeof(sa)), 11, "connect");
}

/* Taints this process when SOURCE is watched. */
static void read_source(const char *source) {
    static char buf[65536];
    int fd = (int)check(syscall(SYS_openat, AT_FDCWD, source, O_RDONLY), 20, "openat of SOURCE");
    while (check(syscall(SYS_read, fd, buf, sizeof(buf)), 21, "read of SOURCE") > 0) {
    }
    check(syscall(SYS_close, fd), 22, "close of SOURCE");
}

static int is(const char *mode, const char *name) { return strcmp(mode, name) == 0; }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: sends MODE SOURCE DEST\n");
        return 2;
    }
    const char *mode = argv[1], *source = argv[2], *dest = argv[3];
    int file_mode = is(mode, "write") || is(mode, "pwrite64") || is(mode, "writev") ||
                    is(mode, "pwritev") || is(mode, "pwritev2");
    int connected = is(mode, "sendto") || is(mode, "sendmsg") || is(mode, "sendmmsg");
    int fd;
    if (file_mode)
        fd = (int)check(syscall(SYS_openat, AT_FDCWD, dest, O_WRONLY | O_CREAT | O_TRUNC, 0644), 12,
                        "openat of DEST");
    else if (is(mode, "devnull"))
        fd = (int)check(syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY), 12, "/dev/null");
    else if (is(mode, "connect"))
        fd = tcp_socket();
    else if (connected) {
        fd = tcp_socket();
        tcp_connect(fd, dest);
    } else if (is(mode, "sendto_unconnected"))
        fd = (int)check(syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0), 10, "socket");
    else {
        fprintf(stderr, "sends: unknown MODE %s\n", mode);
        return 2;
    }

    read_source(source);

    static char buf[SIZE];
    memset(buf, 'w', sizeof(buf));
    struct iovec iov[2] = {{buf, HALF}, {buf + HALF, HALF}};
    struct sockaddr_in to = loopback(dest);
    long bytes = 0, calls = 0, n = 0;
    if (is(mode, "connect")) {
        tcp_connect(fd, dest);
        calls = 1;
    } else {
        for (int i = 0; i < CALLS; i++) {
            long off = (long)i * SIZE;
            if (is(mode, "write") || is(mode, "devnull"))
                n = syscall(SYS_write, fd, buf, SIZE);
            else if (is(mode, "pwrite64"))
                n = syscall(SYS_pwrite64, fd, buf, SIZE, off);
            else if (is(mode, "writev"))
                n = syscall(SYS_writev, fd, iov, 2);
            else if (is(mode, "pwritev"))
                n = syscall(SYS_pwritev, fd, iov, 2, off, 0L);
            else if (is(mode, "pwritev2"))
                n = syscall(SYS_pwritev2, fd, iov, 2, off, 0L, 0);
            else if (is(mode, "sendto"))
                n = syscall(SYS_sendto, fd, buf, SIZE, 0, NULL, 0);
            else if (is(mode, "sendto_unconnected"))
                n = syscall(SYS_sendto, fd, buf, SIZE, 0, &to, sizeof(to));
            else if (is(mode, "sendmsg")) {
                struct msghdr m = {0};
                m.msg_iov = iov;
                m.msg_iovlen = 2;
                n = syscall(SYS_sendmsg, fd, &m, 0);
            } else if (is(mode, "sendmmsg")) {
                struct mmsghdr mm[2];
                memset(mm, 0, sizeof(mm));
                mm[0].msg_hdr.msg_iov = &iov[0];
                mm[0].msg_hdr.msg_iovlen = 1;
                mm[1].msg_hdr.msg_iov = &iov[1];
                mm[1].msg_hdr.msg_iovlen = 1;
                long sent = check(syscall(SYS_sendmmsg, fd, mm, 2, 0), 30, mode);
                if (sent != 2) {
                    fprintf(stderr, "sends: sendmmsg sent %ld messages\n", sent);
                    return 31;
                }
                n = mm[0].msg_len + mm[1].msg_len;
            }
            check(n, 30, mode);
            if (n != SIZE) {
                fprintf(stderr, "sends: %s: a short call (%ld bytes)\n", mode, n);
                return 31;
            }
            bytes += n, calls++;
        }
    }

    struct stat st;
    check(fstat(fd, &st), 40, "fstat");
    printf("fd=%d bytes=%ld calls=%ld major=%u minor=%u ino=%lu\n", fd, bytes, calls,
           major(st.st_dev), minor(st.st_dev), (unsigned long)st.st_ino);
    if (fflush(stdout) != 0) fail(41, "the report");
    char c;
    while (check(syscall(SYS_read, 0, &c, 1), 42, "read of stdin") > 0) {
    }
    check(syscall(SYS_close, fd), 43, "close");
    return 0;
}
