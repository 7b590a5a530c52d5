/* Model parity on the CUDA backend (see parity_gpu_main). Skipped on machines
 * without a CUDA GPU, failed there only when KILN_REQUIRE_CUDA is set. */
#include "kiln_test.h"

#include "backend_suite.h"

int main(void)
{
    static const char *const required[] = {"KILN_REQUIRE_CUDA", NULL};
    return parity_gpu_main("cuda", required);
}
