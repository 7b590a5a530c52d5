#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

kiln_status kiln_map_file(const char *path, const char *kind, const uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_fail(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    kiln_status status = KILN_OK;
    if (fstat(fd, &st) != 0)
        status = kiln_fail(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        status = kiln_fail(KILN_ERR_IO, "%s: %s, not %s", path,
                           S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file", kind);
    else if (st.st_size == 0)
        status = kiln_fail(KILN_ERR_IO, "%s: empty file (0 bytes)", path);
    void *map = status == KILN_OK ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (status == KILN_OK && map == MAP_FAILED)
        status = kiln_fail(KILN_ERR_IO, "%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(errno));
    close(fd); /* the mapping keeps the file open */
    if (status != KILN_OK) return status;
    *data = map;
    *size = (size_t)st.st_size;
    return KILN_OK;
}

void kiln_unmap_file(const uint8_t *data, size_t size)
{
    if (data) munmap((void *)data, size);
}

void kiln_release_pages(const void *data, size_t size)
{
#ifdef MADV_PAGEOUT
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)data + page - 1) / page * page, hi = ((uintptr_t)data + size) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_PAGEOUT);
#else
    (void)data, (void)size;
#endif
}
