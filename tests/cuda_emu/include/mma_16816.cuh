// Stand-in for kernels/mma_16816.cuh (see ../README.md): the warp's lanes
// post their registers, meet at a warp barrier, and each lane computes its own
// four outputs from everyone's operands, decoding the layout that header
// documents.
#pragma once
#include "cuda_common.cuh"

void emu_mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16);

template <typename T> void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    emu_mma_16816(d, a, b, sizeof(T) == 2 && std::is_same<T, __nv_bfloat16>::value);
}
