# The Vulkan backend's build pieces, included by CMakeLists.txt when
# KILN_VULKAN is on:
#   - the list of compute shader variants (below, one line each),
#   - kiln_add_shaders(target): compiles every variant to SPIR-V with
#     glslangValidator at build time, runs the SPIR-V validator on it (the
#     tensor-core variants never run in CI, so this is their check beyond
#     the compiler's), embeds the words as C arrays, and adds
#     volk (the run-time Vulkan loader, compiled from Debian's
#     libvulkan-volk-dev) to the library, so libkiln never links libvulkan.
#
# A variant is a .comp in shaders/ plus preprocessor defines. The host picks
# variants by the generated enum (kiln_vk_shader, KILN_VK_SHADER_<NAME>).

set(kiln_shader_variants "")
macro(kiln_shader name source)
  string(REPLACE ";" "," kiln_shader_defs "${ARGN}") # one list item per variant
  list(APPEND kiln_shader_variants "${name}|${source}|${kiln_shader_defs}")
endmacro()

# Weight-reading ops, one variant per storage type of their main weight:
# f16 through 16-bit storage, and f16p (f16 read from 32-bit words) for
# devices without storageBuffer16BitAccess.
foreach(op matmul conv2d embedding)
  kiln_shader(${op}_f32    ${op}.comp W_DTYPE=0)
  kiln_shader(${op}_f16    ${op}.comp W_F16_STORAGE)
  kiln_shader(${op}_f16p   ${op}.comp W_DTYPE=1)
  kiln_shader(${op}_bf16   ${op}.comp W_DTYPE=2)
  kiln_shader(${op}_f8e4m3 ${op}.comp W_DTYPE=3)
  kiln_shader(${op}_f8e5m2 ${op}.comp W_DTYPE=4)
endforeach()

# Tensor-core GEMMs (shaders/gemm_coopmat.glsl) for f16 weights, used on
# devices with VK_NV_cooperative_matrix in f16 compute, on 16x16x16
# multiplies or (_n8) 16x8x16 ones; the _emu variants run the same tiles on
# emulated matrices (shaders/coopmat.glsl) so that lavapipe tests them; the
# _khr variants are the _n8 ones rewritten for VK_KHR_cooperative_matrix
# (KHR_REWRITE: tools/build/spirv_khr_coopmat.c, as glslang 12 has no KHR
# matrices). Listed in the order runtime/vulkan_ops.c's gemm_variant counts on.
# Each comes four times: on tiles of 64x64 loading operands 1, 2 and 3 K
# steps ahead (gemm_coopmat.glsl's GEMM_PREFETCH: _pf2, _pf3), and on tiles
# of 128x64 loading 1 ahead (GEMM_BM: _m128), which the device picks from
# when it opens (runtime/vulkan_tuning.c).
foreach(kind 1 2 3 m128)
  if(kind STREQUAL "m128")
    set(pf "m128_")
    set(tile GEMM_PREFETCH=1 GEMM_BM=128)
  elseif(kind EQUAL 1)
    set(pf "")
    set(tile GEMM_PREFETCH=1)
  else()
    set(pf "pf${kind}_")
    set(tile GEMM_PREFETCH=${kind})
  endif()
  foreach(op matmul conv2d)
    set(defs W_F16_STORAGE GEMM_COOPMAT ${tile})
    kiln_shader(${op}_coopmat_${pf}f16        ${op}.comp ${defs})
    kiln_shader(${op}_coopmat_${pf}emu_f16    ${op}.comp ${defs} COOPMAT_EMULATED)
    kiln_shader(${op}_coopmat_${pf}n8_f16     ${op}.comp ${defs} CM_N=8)
    kiln_shader(${op}_coopmat_${pf}n8_emu_f16 ${op}.comp ${defs} CM_N=8 COOPMAT_EMULATED)
    kiln_shader(${op}_coopmat_${pf}khr_f16    ${op}.comp ${defs} CM_N=8 KHR_REWRITE)
  endforeach()
endforeach()

# Whole tiles of 128x64 on workgroup-scope matrices (shaders/gemm_workgroup.glsl,
# VK_NV_cooperative_matrix2), rewritten for VK_KHR_cooperative_matrix as the
# _khr variants are (the NV module stays beside the header, for
# tests/test_spirv_khr.c), and their emulated twins; where asked for
# (KILN_VULKAN_GEMM_WORKGROUP=1, runtime/vulkan_device.c).
foreach(op matmul conv2d)
  set(defs W_F16_STORAGE GEMM_COOPMAT GEMM_WORKGROUP)
  kiln_shader(${op}_workgroup_f16     ${op}.comp ${defs} KHR_REWRITE)
  kiln_shader(${op}_workgroup_emu_f16 ${op}.comp ${defs} COOPMAT_EMULATED)
endforeach()

# GGUF's block types widened for matmul (shaders/dequantize.comp), one
# variant per type in kiln_dtype's order from Q4_0 (runtime/vulkan_ops.c
# counts on it).
set(qtype 0)
foreach(type q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs)
  kiln_shader(dequantize_${type} dequantize.comp QTYPE=${qtype})
  math(EXPR qtype "${qtype} + 1")
endforeach()

# The tensor-core conv's f16 column matrix (shaders/im2col.comp), and the
# tensor-core matmul's f16 copy of x (shaders/f16_copy.comp).
kiln_shader(im2col_f16 im2col.comp)
kiln_shader(f16_copy   f16_copy.comp)

# f16 compute's attention on tensor cores (FlashAttention-2 order), on either
# multiply shape as the GEMMs, each with its emulated twin, in vk_attention's
# order; head dims it does not take use the f32 attention below.
kiln_shader(attention_coopmat_f16        attention_coopmat.comp)
kiln_shader(attention_coopmat_emu_f16    attention_coopmat.comp COOPMAT_EMULATED)
kiln_shader(attention_coopmat_n8_f16     attention_coopmat.comp CM_N=8)
kiln_shader(attention_coopmat_n8_emu_f16 attention_coopmat.comp CM_N=8 COOPMAT_EMULATED)
kiln_shader(attention_coopmat_khr_f16    attention_coopmat.comp CM_N=8 KHR_REWRITE)
# The same with its softmax in registers, where NVIDIA's extension (or the
# emulation) multiplies 16x16x16 and lays products out as it needs, which
# coopmat_layout checks on the device (runtime/vulkan_device.c,
# register_softmax).
kiln_shader(attention_registers_f16     attention_registers.comp)
kiln_shader(attention_registers_emu_f16 attention_registers.comp COOPMAT_EMULATED)
# ... and on 128 query rows a workgroup (8 subgroups), timed against it
# when a GPU opens (runtime/vulkan_tuning.c).
kiln_shader(attention_registers_r128_f16     attention_registers.comp ATTENTION_SUBGROUPS=8)
kiln_shader(attention_registers_r128_emu_f16 attention_registers.comp ATTENTION_SUBGROUPS=8 COOPMAT_EMULATED)
kiln_shader(coopmat_layout_f16          coopmat_layout.comp)
kiln_shader(coopmat_layout_emu_f16      coopmat_layout.comp COOPMAT_EMULATED)

kiln_shader(group_norm         group_norm.comp)
kiln_shader(layer_norm         layer_norm.comp)
kiln_shader(rms_norm           layer_norm.comp OP_RMS_NORM)
kiln_shader(ada_layer_norm     layer_norm.comp OP_ADA_LAYER_NORM)
kiln_shader(attention          attention.comp)
kiln_shader(rope               rope.comp)
kiln_shader(softmax            softmax.comp)
kiln_shader(silu               unary.comp OP_SILU)
kiln_shader(sigmoid            unary.comp OP_SIGMOID)
kiln_shader(activation         unary.comp OP_ACTIVATION)
kiln_shader(gelu               unary.comp OP_GELU)
kiln_shader(quick_gelu         unary.comp OP_QUICK_GELU)
kiln_shader(gelu_tanh          unary.comp OP_GELU_TANH)
kiln_shader(scale              unary.comp OP_SCALE)
kiln_shader(leaky_relu         unary.comp OP_LEAKY_RELU)
kiln_shader(geglu              geglu.comp)
kiln_shader(add                binary.comp OP_ADD)
kiln_shader(mul                binary.comp OP_MUL)
kiln_shader(gated_add          gated_add.comp)
kiln_shader(add_channel_bias   add_channel_bias.comp)
kiln_shader(concat_channels    concat_channels.comp)
kiln_shader(pad2d              pad2d.comp)
kiln_shader(upsample_nearest2x upsample_nearest2x.comp)
kiln_shader(timestep_embedding timestep_embedding.comp)
kiln_shader(transpose          transpose.comp)
kiln_shader(freeu_backbone     freeu_backbone.comp)
kiln_shader(fourier_filter     fourier_filter.comp)
kiln_shader(resize             resize.comp)
kiln_shader(slerp_resize       slerp_resize.comp)
kiln_shader(prelu              prelu.comp)
kiln_shader(pixel_shuffle      pixel_shuffle.comp)
kiln_shader(avg_pool2x2        avg_pool2x2.comp)

function(kiln_add_shaders target)
  set(src_dir ${CMAKE_SOURCE_DIR}/shaders)
  set(out_dir ${CMAKE_BINARY_DIR}/shaders)
  file(MAKE_DIRECTORY ${out_dir})
  file(GLOB heads CONFIGURE_DEPENDS ${src_dir}/*.glsl)

  add_executable(spirv_khr_coopmat ${CMAKE_SOURCE_DIR}/tools/build/spirv_khr_coopmat.c)

  set(headers "")
  set(includes "")
  set(enum_items "")
  set(table_items "")
  foreach(variant ${kiln_shader_variants})
    string(REPLACE "|" ";" fields "${variant}")
    list(GET fields 0 name)
    list(GET fields 1 source)
    list(LENGTH fields nfields)
    set(defines "")
    set(khr_rewrite OFF)
    if(nfields GREATER 2)
      list(GET fields 2 defs)
      string(REPLACE "," ";" defs "${defs}")
      foreach(def ${defs})
        if(def STREQUAL "KHR_REWRITE")
          set(khr_rewrite ON)
        else()
          list(APPEND defines -D${def})
        endif()
      endforeach()
    endif()
    if(khr_rewrite)
      # compiled for VK_NV_cooperative_matrix, then rewritten (its SPIR-V
      # validator predates the KHR instructions: the NV module is validated)
      add_custom_command(
        OUTPUT ${out_dir}/${name}.h
        COMMAND ${GLSLANG_VALIDATOR} -V --target-env vulkan1.2 --spirv-val ${defines}
                -o ${out_dir}/${name}.nv.spv ${src_dir}/${source}
        COMMAND spirv_khr_coopmat ${out_dir}/${name}.nv.spv ${out_dir}/${name}.h kiln_spv_${name}
        DEPENDS ${src_dir}/${source} ${heads} spirv_khr_coopmat
        COMMENT "SPIR-V ${name} (${source} ${defines}, rewritten for VK_KHR_cooperative_matrix)"
        VERBATIM)
    else()
      add_custom_command(
        OUTPUT ${out_dir}/${name}.h
        COMMAND ${GLSLANG_VALIDATOR} -V --target-env vulkan1.2 --spirv-val ${defines} --vn kiln_spv_${name}
                -o ${out_dir}/${name}.h ${src_dir}/${source}
        DEPENDS ${src_dir}/${source} ${heads}
        COMMENT "SPIR-V ${name} (${source} ${defines})"
        VERBATIM)
    endif()
    string(TOUPPER ${name} upper)
    list(APPEND headers ${out_dir}/${name}.h)
    string(APPEND includes "#include \"${name}.h\"\n")
    string(APPEND enum_items "    KILN_VK_SHADER_${upper},\n")
    string(APPEND table_items "    {\"${name}\", kiln_spv_${name}, sizeof kiln_spv_${name}},\n")
  endforeach()

  file(CONFIGURE OUTPUT ${out_dir}/vulkan_shaders.h CONTENT
"/* Generated by cmake/shaders.cmake: the embedded SPIR-V shader variants. */
#ifndef KILN_VULKAN_SHADERS_H
#define KILN_VULKAN_SHADERS_H

#include <stddef.h>
#include <stdint.h>

typedef enum kiln_vk_shader {
${enum_items}    KILN_VK_SHADER_COUNT
} kiln_vk_shader;

typedef struct kiln_vk_spirv {
    const char *name;
    const uint32_t *code;
    size_t bytes;
} kiln_vk_spirv;

extern const kiln_vk_spirv kiln_vk_shaders[KILN_VK_SHADER_COUNT];

#endif
" @ONLY)
  file(CONFIGURE OUTPUT ${out_dir}/vulkan_shaders.c CONTENT
"/* Generated by cmake/shaders.cmake. */
#include \"vulkan_shaders.h\"

${includes}
const kiln_vk_spirv kiln_vk_shaders[KILN_VK_SHADER_COUNT] = {
${table_items}};
" @ONLY)

  # The headers are listed as sources so they are built before the table.
  target_sources(${target} PRIVATE ${out_dir}/vulkan_shaders.c ${headers})
  target_include_directories(${target} PRIVATE ${out_dir})

  find_file(KILN_VOLK_C volk.c PATHS /usr/include /usr/local/include NO_CACHE)
  find_path(KILN_VOLK_INCLUDE volk.h PATHS /usr/include /usr/local/include)
  if(NOT KILN_VOLK_C OR NOT KILN_VOLK_INCLUDE)
    message(FATAL_ERROR "KILN_VULKAN needs volk (Debian: libvulkan-volk-dev) for volk.c and volk.h")
  endif()
  target_sources(${target} PRIVATE ${KILN_VOLK_C})
  target_include_directories(${target} PRIVATE ${KILN_VOLK_INCLUDE} ${Vulkan_INCLUDE_DIRS})
  target_link_libraries(${target} PUBLIC ${CMAKE_DL_LIBS})
endfunction()
