/* Constructors for GPU backends that this build does not include, so callers
 * get a clear error instead of a link failure. Compiled once per missing
 * backend with KILN_ABSENT_BACKEND set to its name. */
#include "backend.h"
#include "status.h"

#define ABSENT_CTOR(fn, label)                                                           \
    kiln_status fn(const kiln_backend_options *opt, kiln_backend **out)                   \
    {                                                                                     \
        (void)opt;                                                                        \
        *out = NULL;                                                                      \
        return kiln_fail(KILN_ERR_UNSUPPORTED, "this kiln was built without the " label   \
                         " backend (reconfigure with -DKILN_" label "=ON)");             \
    }

#ifdef KILN_ABSENT_VULKAN
ABSENT_CTOR(kiln_backend_vulkan_create, "VULKAN")
#endif
#ifdef KILN_ABSENT_CUDA
ABSENT_CTOR(kiln_backend_cuda_create, "CUDA")
#endif
