/*
 * Test-only fault: a library preloaded into a lab agent that makes its
 * fsync and fdatasync as slow as a failing disk. Each call first sleeps the
 * number of milliseconds written in $LAB_FAULT_DIR/slow-fsync-ms (no
 * file or 0: no delay), then makes the real system call, so the process
 * sees a real, slow, successful sync. Never built into the product.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void injected_delay(void) {
    const char *dir = getenv("LAB_FAULT_DIR");
    char path[PATH_MAX];
    if (dir == NULL || snprintf(path, sizeof path, "%s/slow-fsync-ms", dir) >= (int)sizeof path) {
        return;
    }
    int saved = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char text[16] = {0};
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        long ms = n > 0 ? strtol(text, NULL, 10) : 0;
        if (ms > 0) {
            struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
            while (nanosleep(&left, &left) != 0 && errno == EINTR) {
            }
        }
    }
    errno = saved;
}

int fsync(int fd) {
    injected_delay();
    return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd) {
    injected_delay();
    return (int)syscall(SYS_fdatasync, fd);
}
