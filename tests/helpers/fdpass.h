/* Sending a descriptor over a unix socket (SCM_RIGHTS), for the helpers
 * whose receiving side is under test. */
#ifndef FDPASS_H
#define FDPASS_H

#include <string.h>
#include <sys/socket.h>

/* A one-byte message with room for one descriptor. */
struct fd_message {
    char byte;
    struct iovec iov;
    char control[CMSG_SPACE(sizeof(int))] __attribute__((aligned(8)));
    struct msghdr msg;
};

static void fd_message_init(struct fd_message *m) {
    memset(m, 0, sizeof(*m));
    m->byte = 'x';
    m->iov.iov_base = &m->byte;
    m->iov.iov_len = 1;
    m->msg.msg_iov = &m->iov;
    m->msg.msg_iovlen = 1;
    m->msg.msg_control = m->control;
    m->msg.msg_controllen = sizeof(m->control);
}

/* Sends `fd` with one data byte; 0 on success, -1 on failure. */
static int send_fd(int sock, int fd) {
    struct fd_message m;
    fd_message_init(&m);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m.msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &m.msg, 0) == 1 ? 0 : -1;
}

/* Receives one descriptor sent by `send_fd`; -1 on failure. */
__attribute__((unused)) static int recv_fd(int sock) {
    struct fd_message m;
    fd_message_init(&m);
    if (recvmsg(sock, &m.msg, 0) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m.msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

#endif
