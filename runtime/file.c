#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "status.h"

kiln_status kiln_read_file(const char *path, size_t max_bytes, const char *kind, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_fail(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    kiln_status status = KILN_OK;
    uint8_t *buf = NULL;
    /* the size is checked before anything is read: a hostile path may name
     * a device or a huge file */
    if (fstat(fileno(f), &st) != 0) {
        status = kiln_fail(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        status = kiln_fail(KILN_ERR_IO, "%s: %s, not %s", path, S_ISDIR(st.st_mode) ? "a directory" : "a special file",
                           kind);
    } else if ((uint64_t)st.st_size > max_bytes) {
        status = kiln_fail(KILN_ERR_UNSUPPORTED, "%s: %lld bytes is too large for %s", path, (long long)st.st_size,
                           kind);
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        status = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    } else if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        status = kiln_fail(KILN_ERR_IO, "%s: read error", path);
    }
    fclose(f);
    if (status != KILN_OK) {
        free(buf);
        return status;
    }
    buf[st.st_size] = 0;
    *data = buf;
    *size = (size_t)st.st_size;
    return KILN_OK;
}
