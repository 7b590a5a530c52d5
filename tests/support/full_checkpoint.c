#include "full_checkpoint.h"

#include "kiln_test.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The checkpoint's path, creating it on first use; NULL (with the reason on
 * stderr) when it cannot be made. */
static const char *full_checkpoint(void)
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

const char *kiln_test_slow_checkpoint(int *exit_code)
{
    if (!getenv("KILN_SLOW")) {
        printf("skipped: the full-size SD 1.5 tests run with KILN_SLOW=1 (tools/test.sh sets it)\n");
        *exit_code = KILN_TEST_SKIP;
        return NULL;
    }
    const char *path = full_checkpoint();
    if (!path) {
        printf("FAILED: no full-size checkpoint (see above)\n");
        *exit_code = 1;
    }
    return path;
}
