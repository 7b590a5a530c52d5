/* Entry points of GPU backends that this build does not include, so callers
 * get a clear error instead of a link failure. Compiled once per missing
 * backend with KILN_ABSENT_BACKEND set to its name. */
#include "backend.h"
#include "status.h"

static kiln_status absent(const char *label)
{
    return kiln_fail(KILN_ERR_UNSUPPORTED, "this kiln was built without the %s backend (reconfigure with -DKILN_%s=ON)",
                     label, label);
}

#define ABSENT_BACKEND(create, devices, label)                                           \
    kiln_status create(const kiln_backend_options *opt, kiln_backend **out)               \
    {                                                                                     \
        (void)opt;                                                                        \
        *out = NULL;                                                                      \
        return absent(label);                                                             \
    }                                                                                     \
    kiln_status devices(kiln_device_info *out, int max, int *count)                       \
    {                                                                                     \
        (void)out;                                                                        \
        (void)max;                                                                        \
        *count = 0;                                                                       \
        return absent(label);                                                             \
    }

#ifdef KILN_ABSENT_VULKAN
ABSENT_BACKEND(kiln_backend_vulkan_create, kiln_backend_vulkan_devices, "VULKAN")
#endif
#ifdef KILN_ABSENT_CUDA
ABSENT_BACKEND(kiln_backend_cuda_create, kiln_backend_cuda_devices, "CUDA")
#endif
