/* An open/close storm: PROCS processes each open and close every file
 * DIR/f000.safetensors .. DIR/f{FILES-1}.safetensors, ROUNDS times over,
 * as fast as they can (openat + close, no read). Every open must succeed.
 *
 *   storm DIR FILES ROUNDS PROCS [once]
 *
 * With "once", each process opens each file once and keeps going with the
 * next file (FILES should then be large): every open is a first open.
 *
 * Prints one line per process, "pid PID opens N", once it has finished,
 * then exits 0 when every child did. The processes start together (they
 * wait on a pipe) so that they run at the same time.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int storm(const char *dir, int files, int rounds, int gate) {
    char path[4096];
    char go;
    long opens = 0;
    /* Wait for the start signal: every child is forked by then. */
    if (read(gate, &go, 1) != 0) {
        return 2;
    }
    for (int r = 0; r < rounds; r++) {
        for (int f = 0; f < files; f++) {
            snprintf(path, sizeof path, "%s/f%03d.safetensors", dir, f);
            int fd = openat(AT_FDCWD, path, O_RDONLY);
            if (fd < 0) {
                perror(path);
                return 1;
            }
            close(fd);
            opens++;
        }
    }
    printf("pid %d opens %ld\n", (int)getpid(), opens);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: storm DIR FILES ROUNDS PROCS [once]\n");
        return 2;
    }
    const char *dir = argv[1];
    int files = atoi(argv[2]), rounds = atoi(argv[3]), procs = atoi(argv[4]);
    if (argc > 5 && strcmp(argv[5], "once") == 0) {
        rounds = 1;
    }
    int gate[2];
    if (pipe(gate) != 0) {
        perror("pipe");
        return 2;
    }
    fflush(stdout);
    for (int p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            close(gate[1]);
            _exit(storm(dir, files, rounds, gate[0]));
        }
    }
    close(gate[0]);
    close(gate[1]); /* EOF: go */
    int failed = 0, status;
    while (wait(&status) > 0) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed = 1;
        }
    }
    return failed;
}
