/* Tampering syscalls, each issued by number through syscall(2) so that no
 * libc can swap one for another (glibc's truncate() and chmod() are what
 * they say, but rename() may be renameat2, unlink() unlinkat, chown()
 * fchownat). Verify with `strace -f` when in doubt.
 *
 *   changes MODE FILE [TO]
 *
 * FILE and TO are absolute paths. The *at modes open FILE's (and TO's)
 * directory with O_PATH and pass the base name relative to it, so the
 * dirfd arguments are decoded too.
 *   truncate           truncate(FILE, 100)
 *   ftruncate          openat(FILE, O_RDWR), ftruncate(fd, 10)
 *   rename renameat    FILE renamed to TO
 *   renameat2          FILE renamed to TO with RENAME_NOREPLACE
 *   link               a hard link TO of FILE
 *   linkat             the same with AT_SYMLINK_FOLLOW
 *   unlink unlinkat    FILE unlinked
 *   chmod fchmodat     mode 0600
 *   fchmodat2          mode 0600, AT_SYMLINK_NOFOLLOW (exit 77: ENOSYS)
 *   fchmod             openat(FILE, O_RDONLY), fchmod(fd, 0600)
 *   chown              owner 1, group 1
 *   lchown             owner 1, group -1 (unchanged)
 *   fchownat           owner 1, group 1, AT_SYMLINK_NOFOLLOW
 *   fchown             openat(FILE, O_RDONLY), fchown(fd, 1, 1)
 *   open_write open_trunc openat_write openat_trunc openat2_write
 *   openat2_trunc open_by_handle_at_write creat_trunc
 *                      the named open, O_WRONLY (_write) or O_WRONLY |
 *                      O_TRUNC (_trunc), of FILE; creat is O_CREAT |
 *                      O_WRONLY | O_TRUNC by definition; open_by_handle_at
 *                      with a handle from name_to_handle_at
 *   open_create openat_create openat2_create creat_create
 *                      the named open creating FILE (O_CREAT | O_EXCL |
 *                      O_WRONLY, mode 0644; creat: O_CREAT | O_WRONLY |
 *                      O_TRUNC)
 *   mknod_fifo         mknod(FILE, S_IFIFO | 0644, 0)
 *   mknodat_reg        mknodat(dir, base, S_IFREG | 0600, 0)
 *   mknodat_chr        mknodat(dir, base, S_IFCHR | 0600, makedev(1, 3))
 *   symlink symlinkat  FILE made a symbolic link to TO (TO as given)
 *
 * Prints `fd=FD` (the descriptor the call used or returned, -1 for path
 * operations) and closes every descriptor it opened with close(2).
 * Exit codes: 0 done; 2 usage; 77 the syscall is not supported here; any
 * other: the step that failed (stderr names it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

static void fail(int code, const char *what) {
    fprintf(stderr, "changes: %s failed: %s\n", what, strerror(errno));
    exit(code);
}

static long check(long ret, int code, const char *what) {
    if (ret < 0) fail(code, what);
    return ret;
}

/* The directory of `path`, opened O_PATH; its base name in `*base`. */
static int dir_of(const char *path, const char **base) {
    char *a = strdup(path), *b = strdup(path);
    *base = basename(b);
    return (int)check(syscall(SYS_openat, AT_FDCWD, dirname(a), O_PATH | O_DIRECTORY), 10,
                      "the directory");
}

static int is(const char *mode, const char *name) { return strcmp(mode, name) == 0; }

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: changes MODE FILE [TO]\n");
        return 2;
    }
    const char *mode = argv[1], *file = argv[2], *to = argc == 4 ? argv[3] : NULL;
    int needs_to = is(mode, "rename") || is(mode, "renameat") || is(mode, "renameat2") ||
                   is(mode, "link") || is(mode, "linkat") || is(mode, "symlink") ||
                   is(mode, "symlinkat");
    if (needs_to && to == NULL) {
        fprintf(stderr, "changes: %s needs TO\n", mode);
        return 2;
    }
    const char *base, *to_base = NULL;
    int symlinks = is(mode, "symlink") || is(mode, "symlinkat");
    int dir = dir_of(file, &base), to_dir = to && !symlinks ? dir_of(to, &to_base) : -1;
    long fd = -1, ret;

    if (is(mode, "truncate"))
        ret = syscall(SYS_truncate, file, 100L);
    else if (is(mode, "ftruncate")) {
        fd = check(syscall(SYS_openat, AT_FDCWD, file, O_RDWR), 11, "openat");
        ret = syscall(SYS_ftruncate, fd, 10L);
    } else if (is(mode, "rename"))
        ret = syscall(SYS_rename, file, to);
    else if (is(mode, "renameat"))
        ret = syscall(SYS_renameat, dir, base, to_dir, to_base);
    else if (is(mode, "renameat2"))
        ret = syscall(SYS_renameat2, dir, base, to_dir, to_base, RENAME_NOREPLACE);
    else if (is(mode, "link"))
        ret = syscall(SYS_link, file, to);
    else if (is(mode, "linkat"))
        ret = syscall(SYS_linkat, dir, base, to_dir, to_base, AT_SYMLINK_FOLLOW);
    else if (is(mode, "unlink"))
        ret = syscall(SYS_unlink, file);
    else if (is(mode, "unlinkat"))
        ret = syscall(SYS_unlinkat, dir, base, 0);
    else if (is(mode, "chmod"))
        ret = syscall(SYS_chmod, file, 0600);
    else if (is(mode, "fchmodat"))
        ret = syscall(SYS_fchmodat, dir, base, 0600);
    else if (is(mode, "fchmodat2")) {
        ret = syscall(SYS_fchmodat2, dir, base, 0600, AT_SYMLINK_NOFOLLOW);
        if (ret < 0 && errno == ENOSYS) {
            fprintf(stderr, "changes: fchmodat2: ENOSYS\n");
            return 77;
        }
    } else if (is(mode, "fchmod")) {
        fd = check(syscall(SYS_openat, AT_FDCWD, file, O_RDONLY), 11, "openat");
        ret = syscall(SYS_fchmod, fd, 0600);
    } else if (is(mode, "chown"))
        ret = syscall(SYS_chown, file, 1, 1);
    else if (is(mode, "lchown"))
        ret = syscall(SYS_lchown, file, 1, -1);
    else if (is(mode, "fchownat"))
        ret = syscall(SYS_fchownat, dir, base, 1, 1, AT_SYMLINK_NOFOLLOW);
    else if (is(mode, "fchown")) {
        fd = check(syscall(SYS_openat, AT_FDCWD, file, O_RDONLY), 11, "openat");
        ret = syscall(SYS_fchown, fd, 1, 1);
    } else if (is(mode, "open_write") || is(mode, "open_trunc")) {
        int flags = O_WRONLY | (is(mode, "open_trunc") ? O_TRUNC : 0);
        ret = fd = syscall(SYS_open, file, flags);
    } else if (is(mode, "openat_write") || is(mode, "openat_trunc")) {
        int flags = O_WRONLY | (is(mode, "openat_trunc") ? O_TRUNC : 0);
        ret = fd = syscall(SYS_openat, dir, base, flags);
    } else if (is(mode, "openat2_write") || is(mode, "openat2_trunc")) {
        struct open_how how = {.flags = O_WRONLY | (is(mode, "openat2_trunc") ? O_TRUNC : 0)};
        ret = fd = syscall(SYS_openat2, dir, base, &how, sizeof(how));
    } else if (is(mode, "creat_trunc"))
        ret = fd = syscall(SYS_creat, file, 0644);
    else if (is(mode, "open_create"))
        ret = fd = syscall(SYS_open, file, O_CREAT | O_EXCL | O_WRONLY, 0644);
    else if (is(mode, "openat_create"))
        ret = fd = syscall(SYS_openat, dir, base, O_CREAT | O_EXCL | O_WRONLY, 0644);
    else if (is(mode, "openat2_create")) {
        struct open_how how = {.flags = O_CREAT | O_EXCL | O_WRONLY, .mode = 0644};
        ret = fd = syscall(SYS_openat2, dir, base, &how, sizeof(how));
    } else if (is(mode, "creat_create"))
        ret = fd = syscall(SYS_creat, file, 0644);
    else if (is(mode, "mknod_fifo"))
        ret = syscall(SYS_mknod, file, S_IFIFO | 0644, 0);
    else if (is(mode, "mknodat_reg"))
        ret = syscall(SYS_mknodat, dir, base, S_IFREG | 0600, 0);
    else if (is(mode, "mknodat_chr"))
        ret = syscall(SYS_mknodat, dir, base, S_IFCHR | 0600, makedev(1, 3));
    else if (is(mode, "symlink"))
        ret = syscall(SYS_symlink, to, file);
    else if (is(mode, "symlinkat"))
        ret = syscall(SYS_symlinkat, to, dir, base);
    else if (is(mode, "open_by_handle_at_write")) {
        struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
        h->handle_bytes = MAX_HANDLE_SZ;
        int mount_id;
        check(name_to_handle_at(AT_FDCWD, file, h, &mount_id, 0), 12, "name_to_handle_at");
        /* Any descriptor on the same mount will do: the file's directory. */
        int mfd = (int)check(syscall(SYS_openat, dir, ".", O_RDONLY | O_DIRECTORY), 13, "the mount");
        ret = fd = syscall(SYS_open_by_handle_at, mfd, h, O_WRONLY);
        check(syscall(SYS_close, mfd), 14, "close of the mount");
    } else {
        fprintf(stderr, "changes: unknown MODE %s\n", mode);
        return 2;
    }
    check(ret, 20, mode);
    if (fd >= 0) check(syscall(SYS_close, fd), 21, "close");
    check(syscall(SYS_close, dir), 22, "close of the directory");
    if (to_dir >= 0) check(syscall(SYS_close, to_dir), 22, "close of the directory");
    printf("fd=%ld\n", fd);
    return 0;
}
