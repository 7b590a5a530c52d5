/* Model parity on the Vulkan backend (see parity_gpu_main). Runs on lavapipe
 * where there is no GPU; in CI a missing Vulkan device is a failure. */
#include "kiln_test.h"

#include "backend_suite.h"

int main(void)
{
    static const char *const required[] = {"CI", "KILN_REQUIRE_VULKAN", NULL};
    return parity_gpu_main("vulkan", required);
}
