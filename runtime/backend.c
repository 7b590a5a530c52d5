#include "backend.h"

#include <string.h>

#include "status.h"

kiln_status kiln_backend_create(const char *name, const kiln_backend_options *opt, kiln_backend **out)
{
    if (strcmp(name, "cpu") == 0) return kiln_backend_cpu_create(opt, out);
    if (strcmp(name, "vulkan") == 0) return kiln_backend_vulkan_create(opt, out);
    if (strcmp(name, "cuda") == 0) return kiln_backend_cuda_create(opt, out);
    if (strcmp(name, "auto") == 0) {
        if (kiln_backend_cuda_create(opt, out) == KILN_OK) return KILN_OK;
        if (kiln_backend_vulkan_create(opt, out) == KILN_OK) return KILN_OK;
        kiln_clear_error();
        return kiln_backend_cpu_create(opt, out);
    }
    return kiln_fail(KILN_ERR_INVALID_ARG, "unknown backend '%s' (cpu, vulkan, cuda, auto)", name);
}

void kiln_backend_free(kiln_backend *be)
{
    if (be) be->ops->destroy(be);
}
