/* Model parity on the Vulkan backend (see parity_gpu_main). Runs on lavapipe
 * where there is no GPU; in CI a missing Vulkan device is a failure. The f16
 * UNet case runs in f16 compute, on the tensor-core shaders: NVIDIA's
 * cooperative matrices where the driver has them, emulated ones elsewhere. */
#include "kiln_test.h"

#include <stdlib.h>

#include "backend_suite.h"

int main(void)
{
    static const char *const required[] = {"CI", "KILN_REQUIRE_VULKAN", NULL};
    setenv("KILN_VULKAN_EMULATE_COOPMAT", "1", 1);
    return parity_gpu_main("vulkan", required);
}
