/* Reads a weight file through a descriptor its process did not open: the
 * routes the policy's kill fallback must cover. One binary, two roles: a
 * copy of it at an allowed path gives (opens and passes on), the binary at
 * another path takes (is denied by the policy).
 *
 *   routes give-socket FILE TAKER SHM   open FILE, pass it over a unix
 *                                       socket to `TAKER take-socket 3 SHM`
 *   routes give-inherit FILE TAKER SHM  open FILE, exec `TAKER HOW 3 SHM`
 *          HOW                          with the descriptor inherited as 3
 *   routes take-socket SOCK SHM         receive a descriptor, read it into SHM
 *   routes read FD SHM                  read FD into SHM (a shared mapping)
 *   routes mmap FD SHM                  map FD, copy the mapping into SHM
 *   routes sendfile FD SHM              sendfile FD into the file SHM
 *   routes splice FD SHM                splice FD through a pipe into SHM
 *   routes copy_file_range FD SHM       copy_file_range FD into SHM
 *   routes uring-read FD SHM            an io_uring READ of FD into SHM
 *   routes uring-splice FD SHM          an io_uring SPLICE of FD into a
 *                                       pipe, read into SHM
 *
 * SHM is a file the taker writes what it got into (mapped MAP_SHARED for
 * `read`, `mmap` and the io_uring routes, so bytes a killed reader
 * received would show). The
 * giver prints the taker's pid and fate: "taker PID: exit N" or
 * "taker PID: signal N".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"
#include "uring.h"

#define LEN 4096

static char *map_shm(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) { perror("open shm"); exit(2); }
    char *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap shm"); exit(2); }
    close(fd);
    return p;
}

static int out_fd(const char *path) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) { perror("open shm"); exit(2); }
    return fd;
}

/* Takes the weight descriptor `fd` the way `how` says. */
static int take(const char *how, int fd, const char *shm) {
    ssize_t n = -1;
    if (!strcmp(how, "read")) {
        n = read(fd, map_shm(shm), LEN);
    } else if (!strcmp(how, "mmap")) {
        char *w = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, fd, 0);
        if (w == MAP_FAILED) { perror("mmap"); return 1; }
        memcpy(map_shm(shm), w, LEN);
        n = LEN;
    } else if (!strcmp(how, "sendfile")) {
        n = sendfile(out_fd(shm), fd, NULL, LEN);
    } else if (!strcmp(how, "splice")) {
        int p[2];
        if (pipe(p)) { perror("pipe"); return 1; }
        n = splice(fd, NULL, p[1], NULL, LEN, 0);
        if (n > 0) n = splice(p[0], NULL, out_fd(shm), NULL, n, 0);
    } else if (!strcmp(how, "copy_file_range")) {
        n = copy_file_range(fd, NULL, out_fd(shm), NULL, LEN, 0);
    } else if (!strcmp(how, "uring-read")) {
        struct ring r;
        ring_setup(&r);
        struct io_uring_sqe sqe = request(IORING_OP_READ, fd, (uintptr_t)map_shm(shm), LEN, 0);
        n = submit(&r, &sqe);
        if (n < 0) { errno = -n; n = -1; }
    } else if (!strcmp(how, "uring-splice")) {
        struct ring r;
        ring_setup(&r);
        int p[2];
        if (pipe(p)) { perror("pipe"); return 1; }
        struct io_uring_sqe sqe = splice_request(fd, 0, p[1], LEN, 0);
        n = submit(&r, &sqe);
        if (n < 0) { errno = -n; n = -1; }
        if (n > 0) n = read(p[0], map_shm(shm), n);
    } else {
        fprintf(stderr, "unknown route %s\n", how);
        return 2;
    }
    if (n < 0) { perror(how); return 1; }
    printf("took %zd\n", n);
    return 0;
}

/* Runs the taker and reports how it ended. */
static int report(pid_t child) {
    int status;
    if (waitpid(child, &status, 0) < 0) { perror("waitpid"); return 2; }
    if (WIFSIGNALED(status)) printf("taker %d: signal %d\n", child, WTERMSIG(status));
    else printf("taker %d: exit %d\n", child, WEXITSTATUS(status));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 5 && !strcmp(argv[1], "give-socket")) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { perror("open"); return 1; }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); return 2; }
        pid_t child = fork();
        if (child == 0) {
            close(sv[0]);
            dup2(sv[1], 3);
            execl(argv[3], argv[3], "take-socket", "3", argv[4], (char *)NULL);
            _exit(127);
        }
        close(sv[1]);
        if (send_fd(sv[0], fd)) { perror("sendmsg"); return 2; }
        return report(child);
    }
    if (argc == 6 && !strcmp(argv[1], "give-inherit")) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) { perror("open"); return 1; }
        pid_t child = fork();
        if (child == 0) {
            dup2(fd, 3);
            execl(argv[3], argv[3], argv[5], "3", argv[4], (char *)NULL);
            _exit(127);
        }
        return report(child);
    }
    if (argc == 4 && !strcmp(argv[1], "take-socket")) {
        int fd = recv_fd(atoi(argv[2]));
        if (fd < 0) { perror("recvmsg"); return 2; }
        return take("read", fd, argv[3]);
    }
    if (argc == 4) return take(argv[1], atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: see the comment at the top of routes.c\n");
    return 2;
}
