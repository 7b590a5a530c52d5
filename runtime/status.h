/* Error reporting inside the runtime: set a message, return the code. */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include "kiln.h"

/* Records a printf-style message for kiln_last_error() and returns `code`. */
kiln_status kiln_fail(kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with more context ("loading X: <old message>")
 * and returns `code` unchanged. */
kiln_status kiln_fail_context(kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reports something kiln goes on past to the warning handler
 * (kiln_set_warning_handler; stderr by default). */
void kiln_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Clears the thread's message. */
void kiln_clear_error(void);

/* Propagates a failing status to the caller. */
#define TRY(expr)                                  \
    do {                                           \
        kiln_status try_status_ = (expr);          \
        if (try_status_ != KILN_OK) return try_status_; \
    } while (0)

#endif
