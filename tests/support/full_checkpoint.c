#include "full_checkpoint.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *kiln_test_full_checkpoint(void)
{
    static const char path[] = KILN_BINARY_DIR "/sd15_hashinit.safetensors";
    static const char tool[] = KILN_BINARY_DIR "/bin/make_sd15_hashinit";
    struct stat sb;
    if (stat(path, &sb) == 0) return path;
    if (access(tool, X_OK) != 0) {
        fprintf(stderr, "full checkpoint: %s is missing and %s cannot run (%s): build make_sd15_hashinit\n", path,
                tool, strerror(errno));
        return NULL;
    }
    fprintf(stderr, "full checkpoint: writing %s with make_sd15_hashinit (2.13 GB, once)\n", path);
    char *argv[] = {(char *)tool, (char *)path, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, tool, NULL, NULL, argv, environ);
    if (err != 0) {
        fprintf(stderr, "full checkpoint: cannot start %s: %s\n", tool, strerror(err));
        return NULL;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "full checkpoint: waiting for %s: %s\n", tool, strerror(errno));
            return NULL;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || stat(path, &sb) != 0) {
        fprintf(stderr, "full checkpoint: %s failed (status %d); %s not written\n", tool, status, path);
        return NULL;
    }
    return path;
}
