#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[2048];

const char *kiln_last_error(void) { return last_error; }

const char *kiln_status_name(kiln_status status)
{
    switch (status) {
    case KILN_OK: return "KILN_OK";
    case KILN_ERR_INVALID_ARG: return "KILN_ERR_INVALID_ARG";
    case KILN_ERR_IO: return "KILN_ERR_IO";
    case KILN_ERR_FORMAT: return "KILN_ERR_FORMAT";
    case KILN_ERR_MODEL: return "KILN_ERR_MODEL";
    case KILN_ERR_OUT_OF_MEMORY: return "KILN_ERR_OUT_OF_MEMORY";
    case KILN_ERR_UNSUPPORTED: return "KILN_ERR_UNSUPPORTED";
    case KILN_ERR_BACKEND: return "KILN_ERR_BACKEND";
    case KILN_ERR_CANCELLED: return "KILN_ERR_CANCELLED";
    }
    return "KILN_ERR_UNKNOWN";
}

kiln_status kiln_fail(kiln_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

kiln_status kiln_fail_context(kiln_status code, const char *fmt, ...)
{
    char old[sizeof last_error];
    char prefix[512];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* "prefix: old", the old message cut short when the two do not fit */
    size_t used = strlen(prefix);
    if (used > sizeof last_error - 3) used = sizeof last_error - 3;
    memcpy(last_error, prefix, used);
    memcpy(last_error + used, ": ", 2);
    used += 2;
    size_t len = strnlen(old, sizeof last_error - 1 - used);
    memcpy(last_error + used, old, len);
    last_error[used + len] = '\0';
    return code;
}

static kiln_warning_fn warning_handler;
static void *warning_ctx;

void kiln_set_warning_handler(kiln_warning_fn fn, void *ctx)
{
    warning_handler = fn;
    warning_ctx = ctx;
}

void kiln_warn(const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (warning_handler) warning_handler(warning_ctx, message);
    else fprintf(stderr, "kiln: warning: %s\n", message);
}

void kiln_clear_error(void) { last_error[0] = '\0'; }
