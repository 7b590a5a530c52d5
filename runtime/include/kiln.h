/* kiln — public C API.
 *
 * Every fallible function returns a kiln_status; on failure kiln_last_error()
 * holds a message naming the file, tensor or flag at fault. Nothing in the
 * library exits or aborts. */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARG,   /* a bad flag, size or parameter from the caller */
    KILN_ERR_IO,            /* a file could not be opened, read or written */
    KILN_ERR_FORMAT,        /* a file is malformed (header, dtype, offsets) */
    KILN_ERR_MODEL,         /* a checkpoint lacks a tensor or has a wrong shape */
    KILN_ERR_OUT_OF_MEMORY, /* host or device allocation failed */
    KILN_ERR_UNSUPPORTED,   /* valid input kiln cannot handle (yet) */
    KILN_ERR_BACKEND,       /* a backend (CUDA, Vulkan) call failed */
} kiln_status;

/* The message set by the last failing call on this thread ("" if none). */
const char *kiln_last_error(void);

/* A short constant name for a status code ("KILN_ERR_FORMAT"). */
const char *kiln_status_name(kiln_status status);

#ifdef __cplusplus
}
#endif
#endif
