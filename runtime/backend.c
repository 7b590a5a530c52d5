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

bool kiln_compute_from_name(const char *name, kiln_dtype *out)
{
    static const struct { const char *name; kiln_dtype dtype; } names[] = {
        {"f32", KILN_F32}, {"f16", KILN_F16}, {"bf16", KILN_BF16}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].dtype;
            return true;
        }
    }
    return false;
}

void kiln_backend_free(kiln_backend *be)
{
    if (be) be->ops->destroy(be);
}
