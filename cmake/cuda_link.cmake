# The CUDA backend's build settings. CMakeLists.txt includes this file after
# kiln_objects, kiln_static and kiln_shared exist, so it configures those
# targets directly.
#
# Kernels are built as real code for Ampere (sm_80, sm_86), Ada (sm_89) and
# Hopper (sm_90), plus sm_90 PTX so newer GPUs can JIT them; KILN_CUDA_ARCHS
# narrows that for a build meant for one card (e.g. "90-real"). cuBLASLt does
# the linears; convolution is our own implicit GEMM, so cuDNN is not linked.
if(NOT KILN_CUDA)
  return()
endif()

find_package(CUDAToolkit REQUIRED)
set(KILN_CUDA_ARCHS "80-real;86-real;89-real;90-real;90-virtual" CACHE STRING
  "CUDA architectures the kernels are built for")

set_target_properties(kiln_objects PROPERTIES
  CUDA_ARCHITECTURES "${KILN_CUDA_ARCHS}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON)
# Host code inside .cu files gets the same warnings as the C sources. No
# --use_fast_math: expf/erff/sinf must stay accurate to match the CPU reference.
target_compile_options(kiln_objects PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)

target_link_libraries(kiln_objects PUBLIC CUDA::cudart CUDA::cublasLt)
foreach(lib kiln_static kiln_shared)
  target_link_libraries(${lib} PUBLIC CUDA::cudart CUDA::cublasLt)
endforeach()
