/* Loading Vulkan at run time, picking a device and opening it.
 *
 * libkiln does not link libvulkan: volk finds the loader with dlopen when a
 * Vulkan backend is created, so a machine without Vulkan gets a clear
 * KILN_ERR_UNSUPPORTED here and every other backend still works. */
#include "vulkan_backend.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static const char *result_name(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_INVALID_SHADER_NV: return "VK_ERROR_INVALID_SHADER_NV";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult";
    }
}

kiln_status kiln_vk_fail_result(VkResult result, const char *file, int line, const char *call)
{
    bool memory = result == VK_ERROR_OUT_OF_HOST_MEMORY || result == VK_ERROR_OUT_OF_DEVICE_MEMORY;
    return kiln_fail(memory ? KILN_ERR_OUT_OF_MEMORY : KILN_ERR_BACKEND, "vulkan: %s:%d: %s: %s (%d)", file, line,
                     call, result_name(result), (int)result);
}

static const char *device_type_name(VkPhysicalDeviceType type)
{
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
    }
}

/* Lower is preferred when no device index is given. */
static int device_type_rank(VkPhysicalDeviceType type)
{
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

/* What kiln needs of a device, and what it found. */
typedef struct device_caps {
    VkPhysicalDeviceProperties props;
    uint32_t queue_family;
    uint32_t timestamp_bits; /* the queue's timestampValidBits: 0, no timestamps */
    bool f16_storage;
    kiln_vk_coopmat coopmat; /* what f16 compute would run on */
    bool coopmat_lists_n8;   /* the driver has 16x8x16 multiplies too (NV) */
    bool khr_usable;         /* VK_KHR_cooperative_matrix with what the _khr variants need */
    bool workgroup_matrices; /* VK_NV_cooperative_matrix2 with what the _workgroup variants need */
    bool quad_reductions;    /* clustered subgroup operations in compute shaders */
    const char *missing; /* NULL when usable */
} device_caps;

static bool has_extension(VkPhysicalDevice pd, const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *exts = malloc(n * sizeof *exts);
    bool found = false;
    if (exts && vkEnumerateDeviceExtensionProperties(pd, NULL, &n, exts) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(exts[i].extensionName, name) == 0;
    free(exts);
    return found;
}

/* The device's multiprocessor count where NVIDIA's driver reports it
 * (VK_NV_shader_sm_builtins; a property query needs the extension listed,
 * not enabled), else 0. */
static uint32_t multiprocessor_count(VkPhysicalDevice pd)
{
    if (!has_extension(pd, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME)) return 0;
    VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sm};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    return sm.shaderSMCount;
}

static bool env_is_1(const char *name)
{
    const char *v = getenv(name);
    return v && strcmp(v, "1") == 0;
}

/* The tensor-core conv builds its column matrix (vulkan_ops.c) in row
 * ranges of at most this many bytes: 64 MiB as CUDA's conv, or
 * KILN_VULKAN_CONV_COL_BYTES (less memory, more dispatches; the tests set it
 * low to run many ranges). */
static kiln_status conv_col_bytes(size_t *out)
{
    *out = (size_t)64 << 20;
    const char *v = getenv("KILN_VULKAN_CONV_COL_BYTES");
    if (!v) return KILN_OK;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n == 0 || n > SIZE_MAX)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan: KILN_VULKAN_CONV_COL_BYTES=%s: not a positive byte count", v);
    *out = (size_t)n;
    return KILN_OK;
}

/* A switch taking one digit of `allowed` ("123": 1, 2 or 3); -1 where it
 * is unset, and anything else an error naming it. */
static kiln_status digit_switch(const char *name, const char *allowed, int *out)
{
    *out = -1;
    const char *v = getenv(name);
    if (!v || !*v) return KILN_OK;
    if (!v[1] && strchr(allowed, v[0])) {
        *out = v[0] - '0';
        return KILN_OK;
    }
    char choices[32] = "";
    size_t n = strlen(allowed);
    for (size_t i = 0; i < n && i < 8; i++)
        snprintf(choices + strlen(choices), sizeof choices - strlen(choices), "%s%c",
                 i == 0 ? "" : i + 1 == n ? " or " : ", ", allowed[i]);
    return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan: %s=%s: must be %s", name, v, choices);
}

/* A switch taking 64 or 128 (rows of a tile); 0 where it is unset, and
 * anything else an error naming it. */
static kiln_status rows_switch(const char *name, uint32_t *rows)
{
    *rows = 0;
    const char *v = getenv(name);
    if (!v || !*v) return KILN_OK;
    if (strcmp(v, "64") != 0 && strcmp(v, "128") != 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan: %s=%s: must be 64 or 128", name, v);
    *rows = (uint32_t)atoi(v);
    return KILN_OK;
}

/* Left to timing on a GPU with tensor cores (vulkan_tuning.c), unless set:
 *   KILN_VULKAN_GEMM_PREFETCH=1|2|3 and KILN_VULKAN_GEMM_ROWS=64|128: how
 *   many K steps ahead the tensor-core GEMMs load their operands and how
 *   many rows their tiles of C have (setting either leaves the other at its
 *   default, 1 or 64, untimed), timed on the SD 1.5 UNet's kinds of GEMM
 *   (8192 x 2560 x 320, the feed-forward input: 5 K steps over 5120 tiles;
 *   8192 x 320 x 2880, its 64x64 level's 3x3 convs; 2048 x 640 x 5760,
 *   like its 32x32 level's: a long K over few tiles);
 *   KILN_VULKAN_REGISTER_SOFTMAX=0|1 and KILN_VULKAN_ATTENTION_ROWS=64|128:
 *   whether the tensor-core attention keeps its softmax in registers where
 *   it can (below), and on how many query rows a workgroup (setting either
 *   leaves the other at its default, registers or 64, untimed), timed on
 *   the UNet's self-attention at its two finest levels (4096 queries and
 *   keys, 8 heads of 40; 1024, 8 of 80);
 *   KILN_VULKAN_SPLIT_K=0|1: whether GEMMs with few output tiles and a long
 *   K split it as vulkan_ops.c estimates best, timed on the UNet's 32x32
 *   and 16x16 levels' 3x3 convs (2048 x 640 x 5760, 512 x 1280 x 11520),
 *   which the estimate splits into 4 and 3.
 * Emulated matrices (lavapipe), CPU devices and f32 compute are not timed:
 * they tile C in 64x64, load 1 step ahead, keep the softmax in registers on
 * 64 rows and split K as estimated. */
static const uint32_t gemm_tuning_shapes[][3] = {{8192, 2560, 320}, {8192, 320, 2880}, {2048, 640, 5760}};
static const uint32_t split_tuning_shapes[][3] = {{2048, 640, 5760}, {512, 1280, 11520}};
static const uint32_t attention_tuning_shapes[][4] = {{2, 8, 4096, 40}, {2, 8, 1024, 80}};

/* NVIDIA's cooperative matrices as the tensor-core shaders use them
 * (shaders/coopmat.glsl): f16 operands and f32 accumulators per 32-wide
 * subgroup, 16x16x16; and whether the driver also has 16x8x16 (the shape of
 * the hardware's mma.m16n8k16, KILN_VULKAN_COOPMAT_N=8). */
static bool nv_coopmat_usable(VkPhysicalDevice pd, uint32_t subgroup_size, bool *lists_n8)
{
    *lists_n8 = false;
    if (!has_extension(pd, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) || !vkGetPhysicalDeviceCooperativeMatrixPropertiesNV ||
        subgroup_size != 32)
        return false;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &cm};
    vkGetPhysicalDeviceFeatures2(pd, &f);
    if (!cm.cooperativeMatrix) return false;
    uint32_t n = 0;
    if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkCooperativeMatrixPropertiesNV *props = calloc(n, sizeof *props);
    if (!props) return false;
    for (uint32_t i = 0; i < n; i++) props[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    bool found = false;
    if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++) {
            const VkCooperativeMatrixPropertiesNV *p = &props[i];
            bool ours = p->MSize == 16 && p->KSize == 16 && p->AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                        p->BType == VK_COMPONENT_TYPE_FLOAT16_NV && p->CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                        p->DType == VK_COMPONENT_TYPE_FLOAT32_NV && p->scope == VK_SCOPE_SUBGROUP_NV;
            found |= ours && p->NSize == 16;
            *lists_n8 |= ours && p->NSize == 8;
        }
    free(props);
    return found;
}

/* VK_KHR_cooperative_matrix is newer than Debian 12's Vulkan headers
 * (1.3.239): the parts kiln uses, as the Vulkan registry defines them. */
#ifndef VK_KHR_cooperative_matrix
#define VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME "VK_KHR_cooperative_matrix"
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR ((VkStructureType)1000506000)
#define VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR ((VkStructureType)1000506001)
typedef struct VkPhysicalDeviceCooperativeMatrixFeaturesKHR {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrix;
    VkBool32 cooperativeMatrixRobustBufferAccess;
} VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
typedef struct VkCooperativeMatrixPropertiesKHR {
    VkStructureType sType;
    void *pNext;
    uint32_t MSize, NSize, KSize;
    VkComponentTypeNV AType, BType, CType, ResultType; /* the KHR enums have the NV values */
    VkBool32 saturatingAccumulation;
    VkScopeNV scope;
} VkCooperativeMatrixPropertiesKHR;
typedef VkResult(VKAPI_PTR *PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)(VkPhysicalDevice, uint32_t *,
                                                                                    VkCooperativeMatrixPropertiesKHR *);
#endif

/* The same through VK_KHR_cooperative_matrix, for the _khr shader variants:
 * those are the 16x8x16 ones (cmake/shaders.cmake), so that is the shape
 * it must list. */
static bool khr_coopmat_usable(VkInstance instance, VkPhysicalDevice pd, uint32_t subgroup_size)
{
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR get_properties =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)vkGetInstanceProcAddr(
            instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
    if (!has_extension(pd, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME) || !get_properties || subgroup_size != 32)
        return false;
    VkPhysicalDeviceCooperativeMatrixFeaturesKHR cm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &cm};
    vkGetPhysicalDeviceFeatures2(pd, &f);
    if (!cm.cooperativeMatrix) return false;
    uint32_t n = 0;
    if (get_properties(pd, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkCooperativeMatrixPropertiesKHR *props = calloc(n, sizeof *props);
    if (!props) return false;
    for (uint32_t i = 0; i < n; i++) props[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
    bool found = false;
    if (get_properties(pd, &n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++) {
            const VkCooperativeMatrixPropertiesKHR *p = &props[i];
            found |= p->MSize == 16 && p->NSize == 8 && p->KSize == 16 && p->AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                     p->BType == VK_COMPONENT_TYPE_FLOAT16_NV && p->CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                     p->ResultType == VK_COMPONENT_TYPE_FLOAT32_NV && p->scope == VK_SCOPE_SUBGROUP_NV &&
                     !p->saturatingAccumulation;
        }
    free(props);
    return found;
}

/* VK_NV_cooperative_matrix2 is newer than Debian 12's Vulkan headers too. */
#ifndef VK_NV_cooperative_matrix2
#define VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME "VK_NV_cooperative_matrix2"
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV ((VkStructureType)1000593000)
#define VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_FLEXIBLE_DIMENSIONS_PROPERTIES_NV ((VkStructureType)1000593001)
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_PROPERTIES_NV ((VkStructureType)1000593002)
typedef struct VkPhysicalDeviceCooperativeMatrix2FeaturesNV {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrixWorkgroupScope;
    VkBool32 cooperativeMatrixFlexibleDimensions;
    VkBool32 cooperativeMatrixReductions;
    VkBool32 cooperativeMatrixConversions;
    VkBool32 cooperativeMatrixPerElementOperations;
    VkBool32 cooperativeMatrixTensorAddressing;
    VkBool32 cooperativeMatrixBlockLoads;
} VkPhysicalDeviceCooperativeMatrix2FeaturesNV;
typedef struct VkPhysicalDeviceCooperativeMatrix2PropertiesNV {
    VkStructureType sType;
    void *pNext;
    uint32_t cooperativeMatrixWorkgroupScopeMaxWorkgroupSize;
    uint32_t cooperativeMatrixFlexibleDimensionsMaxDimension;
    uint32_t cooperativeMatrixWorkgroupScopeReservedSharedMemory;
} VkPhysicalDeviceCooperativeMatrix2PropertiesNV;
typedef struct VkCooperativeMatrixFlexibleDimensionsPropertiesNV {
    VkStructureType sType;
    void *pNext;
    uint32_t MGranularity, NGranularity, KGranularity;
    VkComponentTypeNV AType, BType, CType, ResultType;
    VkBool32 saturatingAccumulation;
    VkScopeNV scope;
    uint32_t workgroupInvocations;
} VkCooperativeMatrixFlexibleDimensionsPropertiesNV;
typedef VkResult(VKAPI_PTR *PFN_vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV)(
    VkPhysicalDevice, uint32_t *, VkCooperativeMatrixFlexibleDimensionsPropertiesNV *);
#endif

/* Workgroup-scope matrices for shaders/gemm_workgroup.glsl: its A (64x32
 * f16), B (32x64 f16) and accumulator (64x64 f32) as flexible dimensions
 * of a workgroup of 256, beside its own shared memory and what the driver
 * reserves for staging. Its SPIR-V is KHR's, so that extension too. */
static bool workgroup_matrices_usable(VkInstance instance, VkPhysicalDevice pd, uint32_t max_shared)
{
    PFN_vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV get_flexible =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV)vkGetInstanceProcAddr(
            instance, "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV");
    if (!get_flexible || !has_extension(pd, VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME) ||
        !has_extension(pd, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME))
        return false;
    VkPhysicalDeviceCooperativeMatrix2FeaturesNV cm2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV};
    VkPhysicalDeviceCooperativeMatrixFeaturesKHR cm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR, .pNext = &cm2};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &cm};
    vkGetPhysicalDeviceFeatures2(pd, &f);
    if (!cm.cooperativeMatrix || !cm2.cooperativeMatrixWorkgroupScope || !cm2.cooperativeMatrixFlexibleDimensions)
        return false;
    VkPhysicalDeviceCooperativeMatrix2PropertiesNV limits = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_PROPERTIES_NV};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &limits};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    if (limits.cooperativeMatrixWorkgroupScopeMaxWorkgroupSize < 256 ||
        limits.cooperativeMatrixFlexibleDimensionsMaxDimension < 64 ||
        (uint64_t)limits.cooperativeMatrixWorkgroupScopeReservedSharedMemory + KILN_VK_WORKGROUP_GEMM_SHARED_BYTES >
            max_shared)
        return false;
    uint32_t n = 0;
    if (get_flexible(pd, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkCooperativeMatrixFlexibleDimensionsPropertiesNV *props = calloc(n, sizeof *props);
    if (!props) return false;
    for (uint32_t i = 0; i < n; i++)
        props[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_FLEXIBLE_DIMENSIONS_PROPERTIES_NV;
    bool found = false;
    if (get_flexible(pd, &n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++) {
            const VkCooperativeMatrixFlexibleDimensionsPropertiesNV *p = &props[i];
            found |= p->AType == VK_COMPONENT_TYPE_FLOAT16_NV && p->BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                     p->CType == VK_COMPONENT_TYPE_FLOAT32_NV && p->ResultType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                     !p->saturatingAccumulation && p->scope == VK_SCOPE_WORKGROUP_NV &&
                     p->workgroupInvocations == 256 && p->MGranularity && 64 % p->MGranularity == 0 &&
                     p->NGranularity && 64 % p->NGranularity == 0 && p->KGranularity && 32 % p->KGranularity == 0;
        }
    free(props);
    return found;
}

/* f16 compute needs the tensor-core shaders' shared memory, f16 shader
 * arithmetic and 16-bit storage, and cooperative matrices: NVIDIA's
 * extension (measured, bench/RESULTS.md), else the KHR one (or with
 * KILN_VULKAN_COOPMAT_KHR=1 the KHR one first), or with
 * KILN_VULKAN_EMULATE_COOPMAT=1 on a device without either, emulated ones
 * (slow; it lets lavapipe test the shaders). KILN_VULKAN_NO_COOPMAT=1 turns
 * f16 compute off (to compare against the f32 shaders on the same device). */
static kiln_vk_coopmat coopmat_kind(VkInstance instance, VkPhysicalDevice pd, bool f16_storage, bool shader_f16,
                                    device_caps *caps)
{
    if (env_is_1("KILN_VULKAN_NO_COOPMAT") || !f16_storage || !shader_f16) return KILN_VK_COOPMAT_NONE;
    VkPhysicalDeviceSubgroupProperties sub = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sub};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    if (p2.properties.limits.maxComputeSharedMemorySize < KILN_VK_COOPMAT_SHARED_BYTES) return KILN_VK_COOPMAT_NONE;
    caps->quad_reductions = (sub.supportedOperations & VK_SUBGROUP_FEATURE_CLUSTERED_BIT) &&
                            (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT);
    caps->khr_usable = khr_coopmat_usable(instance, pd, sub.subgroupSize);
    caps->workgroup_matrices =
        workgroup_matrices_usable(instance, pd, p2.properties.limits.maxComputeSharedMemorySize);
    if (caps->khr_usable && env_is_1("KILN_VULKAN_COOPMAT_KHR")) return KILN_VK_COOPMAT_KHR;
    if (nv_coopmat_usable(pd, sub.subgroupSize, &caps->coopmat_lists_n8)) return KILN_VK_COOPMAT_NV;
    if (caps->khr_usable) return KILN_VK_COOPMAT_KHR;
    return env_is_1("KILN_VULKAN_EMULATE_COOPMAT") ? KILN_VK_COOPMAT_EMULATED : KILN_VK_COOPMAT_NONE;
}

static void device_query(VkInstance instance, VkPhysicalDevice pd, device_caps *caps)
{
    memset(caps, 0, sizeof *caps);
    vkGetPhysicalDeviceProperties(pd, &caps->props);
    if (caps->props.apiVersion < VK_API_VERSION_1_2) {
        caps->missing = "Vulkan 1.2";
        return;
    }
    uint32_t nfamilies = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nfamilies, NULL);
    VkQueueFamilyProperties families[16];
    if (nfamilies > 16) nfamilies = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nfamilies, families);
    caps->queue_family = UINT32_MAX;
    for (uint32_t i = 0; i < nfamilies && caps->queue_family == UINT32_MAX; i++)
        if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            caps->queue_family = i;
            caps->timestamp_bits = families[i].timestampValidBits;
        }
    if (caps->queue_family == UINT32_MAX) {
        caps->missing = "a compute queue";
        return;
    }
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                            .pNext = &f12};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    vkGetPhysicalDeviceFeatures2(pd, &f);
    if (!f12.bufferDeviceAddress) {
        caps->missing = "the bufferDeviceAddress feature";
        return;
    }
    /* KILN_VULKAN_NO_F16_STORAGE=1 takes the path of devices without 16-bit
     * storage (f16 weights read from 32-bit words), so it can be tested. */
    caps->f16_storage = f11.storageBuffer16BitAccess && !env_is_1("KILN_VULKAN_NO_F16_STORAGE");
    caps->coopmat = coopmat_kind(instance, pd, caps->f16_storage, f12.shaderFloat16, caps);
}

/* Lists the devices as "0: name (type), 1: ..." for error messages. */
static void describe_devices(VkPhysicalDevice *pds, uint32_t n, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && at < size; i++) {
        VkPhysicalDeviceProperties props;
        vkGetPhysicalDeviceProperties(pds[i], &props);
        int w = snprintf(buf + at, size - at, "%s%u: %s (%s)", i ? ", " : "", i, props.deviceName,
                         device_type_name(props.deviceType));
        if (w < 0) break;
        at += (size_t)w;
    }
}

/* The first usable device of the best type among pds[0..n), and its caps
 * (if caps is not NULL); -1 where none is usable. */
static int preferred_device(VkInstance instance, VkPhysicalDevice *pds, uint32_t n, device_caps *caps)
{
    int best = -1, best_rank = 0;
    for (uint32_t i = 0; i < n; i++) {
        device_caps c;
        device_query(instance, pds[i], &c);
        int rank = device_type_rank(c.props.deviceType);
        if (!c.missing && (best < 0 || rank < best_rank)) {
            best = (int)i;
            best_rank = rank;
            if (caps) *caps = c;
        }
    }
    return best;
}

/* The instance's devices, the first KILN_MAX_DEVICES of them; an error
 * where there are none. */
static kiln_status enumerate_devices(VkInstance instance, VkPhysicalDevice pds[KILN_MAX_DEVICES], uint32_t *n)
{
    *n = 0;
    VK_TRY(vkEnumeratePhysicalDevices(instance, n, NULL));
    if (*n == 0)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: the Vulkan loader found no device (install a driver, "
                                               "e.g. mesa-vulkan-drivers for the lavapipe CPU device)");
    if (*n > KILN_MAX_DEVICES) *n = KILN_MAX_DEVICES;
    VkResult r = vkEnumeratePhysicalDevices(instance, n, pds);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) VK_TRY(r);
    return KILN_OK;
}

/* Index `wanted` as enumerated, or with -1 the first usable device of the
 * best type: discrete GPU, integrated GPU, virtual GPU, CPU (lavapipe). */
static kiln_status device_pick(VkInstance instance, int wanted, VkPhysicalDevice *out, device_caps *caps)
{
    uint32_t n;
    VkPhysicalDevice pds[KILN_MAX_DEVICES];
    TRY(enumerate_devices(instance, pds, &n));
    char list[1024];
    describe_devices(pds, n, list, sizeof list);

    if (wanted >= 0) {
        if ((uint32_t)wanted >= n)
            return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan: --device %d: no such device (%u found: %s)", wanted, n,
                             list);
        device_query(instance, pds[wanted], caps);
        if (caps->missing)
            return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: --device %d (%s) lacks %s, which kiln needs", wanted,
                             caps->props.deviceName, caps->missing);
        *out = pds[wanted];
        return KILN_OK;
    }
    int best = preferred_device(instance, pds, n, caps);
    if (best < 0)
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "vulkan: no usable device (each lacks Vulkan 1.2, a compute queue or bufferDeviceAddress): %s",
                         list);
    *out = pds[best];
    return KILN_OK;
}

static kiln_status instance_create(VkInstance *out)
{
    static bool loaded = false;
    if (!loaded) {
        if (volkInitialize() != VK_SUCCESS)
            return kiln_fail(KILN_ERR_UNSUPPORTED,
                             "vulkan: no Vulkan loader (libvulkan.so.1) on this machine; install one and a driver "
                             "(Debian: libvulkan1 and mesa-vulkan-drivers) or use --backend cpu");
        loaded = true;
    }
    if (volkGetInstanceVersion() < VK_API_VERSION_1_2)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: the Vulkan loader is older than 1.2");
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "kiln",
        .pEngineName = "kiln",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo info = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    VkResult r = vkCreateInstance(&info, NULL, out);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: no Vulkan 1.2 driver is installed (vkCreateInstance: "
                                               "VK_ERROR_INCOMPATIBLE_DRIVER)");
    VK_TRY(r);
    volkLoadInstanceOnly(*out);
    return KILN_OK;
}

/* coopmat: what f16 compute runs on, NONE where it was not asked for. */
static kiln_status device_open(kiln_vk *vk, const device_caps *caps, kiln_vk_coopmat coopmat)
{
    bool nv = coopmat == KILN_VK_COOPMAT_NV, khr = coopmat == KILN_VK_COOPMAT_KHR;
    float priority = 1.0f;
    VkDeviceQueueCreateInfo queue = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = caps->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm_nv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
        .cooperativeMatrix = VK_TRUE,
    };
    VkPhysicalDeviceCooperativeMatrixFeaturesKHR cm_khr = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR,
        .cooperativeMatrix = VK_TRUE,
    };
    /* workgroup-scope matrices (gemm_workgroup.glsl), KHR's types, beside
     * either extension's subgroup ones */
    bool workgroup = (nv || khr) && caps->workgroup_matrices;
    VkPhysicalDeviceCooperativeMatrix2FeaturesNV cm2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV,
        .cooperativeMatrixWorkgroupScope = VK_TRUE,
        .cooperativeMatrixFlexibleDimensions = VK_TRUE,
    };
    if (workgroup) {
        cm_khr.pNext = &cm2;
        if (nv) cm_nv.pNext = &cm_khr;
    }
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .pNext = nv ? (void *)&cm_nv : khr ? (void *)&cm_khr : NULL,
        .bufferDeviceAddress = VK_TRUE,
        .shaderFloat16 = coopmat != KILN_VK_COOPMAT_NONE ? VK_TRUE : VK_FALSE,
    };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .pNext = &f12,
        .storageBuffer16BitAccess = caps->f16_storage ? VK_TRUE : VK_FALSE,
    };
    /* KILN_VULKAN_PIPELINE_STATS=1: the driver's statistics of every
     * pipeline kiln builds (registers, shared memory: what decides how many
     * workgroups share a multiprocessor), on stderr, where it reports them */
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR stats = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR,
        .pNext = f12.pNext,
        .pipelineExecutableInfo = VK_TRUE,
    };
    const char *extensions[4];
    uint32_t nextensions = 0;
    if (nv) extensions[nextensions++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
    if (khr || workgroup) extensions[nextensions++] = VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME;
    if (workgroup) extensions[nextensions++] = VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME;
    /* NVIDIA's driver reports each pipeline's registers, and NVIDIA's
     * register file (64K an SM) is what decides how many GEMM workgroups
     * share an SM, which the split-K estimate counts (vulkan_ops.c) */
    bool executables = has_extension(vk->physical, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
    bool print = env_is_1("KILN_VULKAN_PIPELINE_STATS");
    if (executables && (print || caps->props.vendorID == KILN_VK_VENDOR_NVIDIA)) {
        extensions[nextensions++] = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
        f12.pNext = &stats;
        vk->pipeline_stats = print;
        vk->pipeline_registers = caps->props.vendorID == KILN_VK_VENDOR_NVIDIA;
    } else if (print) {
        fprintf(stderr, "kiln: KILN_VULKAN_PIPELINE_STATS: %s does not report pipeline statistics (no %s)\n",
                caps->props.deviceName, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
    }
    VkDeviceCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f11,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &queue,
        .enabledExtensionCount = nextensions,
        .ppEnabledExtensionNames = nextensions ? extensions : NULL,
    };
    VK_TRY(vkCreateDevice(vk->physical, &info, NULL, &vk->device));
    volkLoadDeviceTable(&vk->fn, vk->device);
    vk->fn.vkGetDeviceQueue(vk->device, caps->queue_family, 0, &vk->queue);
    vk->queue_family = caps->queue_family;
    vk->timestamp_bits = caps->timestamp_bits;
    vk->props = caps->props;
    vk->f16_storage = caps->f16_storage;
    vk->coopmat = coopmat;
    vk->workgroup_matrices = workgroup;
    vkGetPhysicalDeviceMemoryProperties(vk->physical, &vk->memory_props);
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
    vkGetPhysicalDeviceProperties2(vk->physical, &p2);
    vk->max_allocation = m3.maxMemoryAllocationSize;
    return KILN_OK;
}

void kiln_vk_destroy(kiln_backend *be)
{
    kiln_vk *vk = kiln_vk_of(be);
    if (vk) {
        if (vk->device) {
            vk->fn.vkDeviceWaitIdle(vk->device);
            kiln_vk_commands_release(vk);
            kiln_vk_memory_release(vk);
            vk->fn.vkDestroyDevice(vk->device, NULL);
        }
        if (vk->instance) vkDestroyInstance(vk->instance, NULL);
        free(vk);
    }
    free(be);
}

static kiln_status vk_open(kiln_backend *be, const kiln_backend_options *opt)
{
    kiln_vk *vk = kiln_vk_of(be);
    TRY(instance_create(&vk->instance));
    device_caps caps;
    TRY(device_pick(vk->instance, opt ? opt->device : -1, &vk->physical, &caps));
    /* f16 compute exists only as the tensor-core shaders. Left to the
     * backend it is f16 where the driver has them (SD 1.5 at 512x512 on an
     * H200: 15.9 it/s against 6.4 in f32, bench/RESULTS.md), as on CUDA, and
     * never the emulated ones; asked for on a device without them, f32. The
     * KHR shaders are the default only on request until a GPU has run the op
     * suite on them; asked for f16 compute, a device with only the KHR
     * extension runs them. */
    bool khr_asked = env_is_1("KILN_VULKAN_COOPMAT_KHR");
    bool tensor_cores = caps.coopmat == KILN_VK_COOPMAT_NV || (caps.coopmat == KILN_VK_COOPMAT_KHR && khr_asked);
    bool want_f16 = opt && (opt->compute_auto ? tensor_cores : opt->compute == KILN_F16);
    vk->multiprocessors = multiprocessor_count(vk->physical);
    TRY(conv_col_bytes(&vk->conv_col_bytes));
    int gemm_prefetch, softmax_in_registers, split;
    TRY(digit_switch("KILN_VULKAN_GEMM_PREFETCH", "123", &gemm_prefetch));
    uint32_t gemm_rows, attention_rows;
    TRY(rows_switch("KILN_VULKAN_GEMM_ROWS", &gemm_rows));
    vk->gemm_rows = gemm_rows ? gemm_rows : 64;
    if (gemm_rows == 128 && gemm_prefetch > 1)
        return kiln_fail(KILN_ERR_INVALID_ARG,
                         "vulkan: KILN_VULKAN_GEMM_PREFETCH=%d with KILN_VULKAN_GEMM_ROWS=128: tiles of 128 rows load "
                         "1 K step ahead only",
                         gemm_prefetch);
    /* KILN_VULKAN_GEMM_WORKGROUP=1: the GEMMs on VK_NV_cooperative_matrix2's
     * workgroup-scope matrices (gemm_workgroup.glsl; emulated with
     * KILN_VULKAN_EMULATE_COOPMAT=1), not timed; 2: timed at open with the
     * other kinds where the driver has the matrices; 0 or unset: not (below) */
    int workgroup_gemm;
    TRY(digit_switch("KILN_VULKAN_GEMM_WORKGROUP", "012", &workgroup_gemm));
    if (workgroup_gemm >= 1 && (gemm_prefetch > 0 || gemm_rows))
        return kiln_fail(KILN_ERR_INVALID_ARG,
                         "vulkan: KILN_VULKAN_GEMM_WORKGROUP=%d with KILN_VULKAN_GEMM_PREFETCH or "
                         "KILN_VULKAN_GEMM_ROWS: the workgroup-scope GEMM has 128-row tiles and leaves loading to the "
                         "driver",
                         workgroup_gemm);
    TRY(digit_switch("KILN_VULKAN_REGISTER_SOFTMAX", "01", &softmax_in_registers));
    TRY(rows_switch("KILN_VULKAN_ATTENTION_ROWS", &attention_rows));
    if (attention_rows == 128 && softmax_in_registers == 0)
        return kiln_fail(KILN_ERR_INVALID_ARG,
                         "vulkan: KILN_VULKAN_ATTENTION_ROWS=128 with KILN_VULKAN_REGISTER_SOFTMAX=0: only the softmax "
                         "in registers runs on 128 query rows");
    TRY(digit_switch("KILN_VULKAN_SPLIT_K", "01", &split));
    vk->split_k = split != 0;
    if (khr_asked && !caps.khr_usable)
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "vulkan: KILN_VULKAN_COOPMAT_KHR=1: %s has no VK_KHR_cooperative_matrix with 16x8x16 f16 "
                         "multiplies into f32 on 32-wide subgroups",
                         caps.props.deviceName);
    /* KILN_VULKAN_COOPMAT_N=8: the tensor-core shaders multiply 16x8x16
     * blocks instead of 16x16x16 (only where the driver lists them; on an
     * H200 both ran at the same speed, bench/RESULTS.md). The KHR variants
     * exist only as 16x8x16 (cmake/shaders.cmake). */
    const char *n = getenv("KILN_VULKAN_COOPMAT_N");
    uint32_t coopmat_n = caps.coopmat == KILN_VK_COOPMAT_KHR ? 8 : 16;
    if (n && *n) {
        if (strcmp(n, "16") != 0 && strcmp(n, "8") != 0)
            return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan: KILN_VULKAN_COOPMAT_N=%s: must be 16 or 8", n);
        coopmat_n = (uint32_t)atoi(n);
        if (caps.coopmat == KILN_VK_COOPMAT_NV && coopmat_n == 8 && !caps.coopmat_lists_n8)
            return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: KILN_VULKAN_COOPMAT_N=8: %s lists no 16x8x16 f16 multiply",
                             caps.props.deviceName);
        if (caps.coopmat == KILN_VK_COOPMAT_KHR && coopmat_n == 16)
            return kiln_fail(KILN_ERR_UNSUPPORTED,
                             "vulkan: KILN_VULKAN_COOPMAT_N=16: through VK_KHR_cooperative_matrix kiln multiplies "
                             "16x8x16 blocks only (%s)",
                             caps.props.deviceName);
    }
    if (workgroup_gemm == 1 && !(want_f16 && (caps.workgroup_matrices || caps.coopmat == KILN_VK_COOPMAT_EMULATED)))
        return kiln_fail(KILN_ERR_UNSUPPORTED,
                         "vulkan: KILN_VULKAN_GEMM_WORKGROUP=1: %s%s has no VK_NV_cooperative_matrix2 with "
                         "workgroup-scope f16 matrices (64x32, 32x64, 64x64 into f32) for workgroups of 256",
                         caps.props.deviceName, want_f16 ? "" : " runs in f32 here, or");
    /* Until a GPU has run it (as with the KHR shaders before), the
     * workgroup-scope GEMM runs only where asked for: its SPIR-V is the
     * newest thing kiln gives a driver, and a driver that crashed building
     * it would take every default run with it. */
    caps.workgroup_matrices = caps.workgroup_matrices && workgroup_gemm >= 1;
    TRY(device_open(vk, &caps, want_f16 ? caps.coopmat : KILN_VK_COOPMAT_NONE));
    vk->coopmat_n = coopmat_n;
    /* The tensor-core attention with its softmax in registers
     * (attention_registers.comp) needs NVIDIA's extension, 16x16x16
     * multiplies and clustered subgroup operations, or their emulation,
     * and products laid out with each row in one quad of lanes, which is
     * checked on the device below; elsewhere, or with
     * KILN_VULKAN_REGISTER_SOFTMAX=0, attention_coopmat.comp runs. On 128
     * query rows a workgroup it runs where asked (KILN_VULKAN_ATTENTION_ROWS)
     * or where a GPU's timing below prefers it. On a GPU each runs only if it
     * passes the check below. */
    bool register_softmax = coopmat_n == 16 && softmax_in_registers != 0 &&
                            ((vk->coopmat == KILN_VK_COOPMAT_NV && caps.quad_reductions) ||
                             vk->coopmat == KILN_VK_COOPMAT_EMULATED);
    TRY(kiln_vk_commands_init(vk));
    TRY(kiln_vk_staging_init(vk));
    bool quads = false;
    if (register_softmax) TRY(kiln_vk_products_in_quads(be, &quads));
    /* What is left to timing (vulkan_tuning.c), on a GPU with tensor cores. */
    bool timed = (vk->coopmat == KILN_VK_COOPMAT_NV || vk->coopmat == KILN_VK_COOPMAT_KHR) &&
                 caps.props.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU;
    bool attention_timed = timed && softmax_in_registers < 0 && !attention_rows;
    vk->attention[KILN_VK_ATTENTION_SHARED] = vk->coopmat != KILN_VK_COOPMAT_NONE;
    vk->attention[KILN_VK_ATTENTION_REGISTERS] = quads && attention_rows != 128;
    vk->attention[KILN_VK_ATTENTION_REGISTERS_128] = quads && (attention_rows == 128 || attention_timed);
    vk->gemm_prefetch = gemm_prefetch > 0 ? (uint32_t)gemm_prefetch : 1;
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++) vk->gemm_allowed[i] = true;
    /* The workgroup-scope GEMM where asked for (above), checked below like
     * the others, and with 2 timed like them */
    vk->gemm_allowed[KILN_VK_GEMM_WORKGROUP] =
        workgroup_gemm >= 1 && (vk->workgroup_matrices || vk->coopmat == KILN_VK_COOPMAT_EMULATED);
    if (workgroup_gemm == 1) vk->gemm_prefetch = 0, vk->gemm_rows = 128;
    /* Before any timing, a GPU's tensor-core attentions and GEMMs (every
     * kind: a forced one that misses gives way to one that passed) must
     * compute right on it, to the op suite's f16 tolerance
     * (vulkan_tuning.c); emulated matrices are what CI's op suite checks
     * instead. */
    double check_errors[KILN_VK_ATTENTIONS] = {0}, gemm_errors[KILN_VK_GEMM_KERNELS] = {0};
    if (timed) TRY(kiln_vk_check_attentions(be, 1e-2, check_errors));
    if (timed) TRY(kiln_vk_check_gemms(be, 1e-2, gemm_errors));
    if (vk->pipeline_stats && timed)
        fprintf(stderr,
                "kiln vulkan check: attention error, softmax in shared memory %.2g, in registers %.2g, in registers "
                "on 128 rows %.2g; GEMM error, tiles 64x64 loading 1, 2, 3 K steps ahead, 128x64 loading 1, "
                "workgroup-scope matrices: %.2g, %.2g, %.2g, %.2g, %.2g\n",
                check_errors[0], check_errors[1], check_errors[2], gemm_errors[0], gemm_errors[1], gemm_errors[2],
                gemm_errors[3], gemm_errors[4]);
    /* a timing that fails leaves the defaults and no "(timed)" in the
     * device name; the device is no less usable. With
     * KILN_VULKAN_PIPELINE_STATS=1 the times go to stderr too. */
    double gemm_seconds[KILN_VK_GEMM_KERNELS] = {0}, attention_seconds[KILN_VK_ATTENTIONS] = {0}, split_seconds[2] = {0};
    if (timed)
        (void)kiln_vk_tune_gemms(be, gemm_tuning_shapes, gemm_prefetch < 0 && !gemm_rows && workgroup_gemm != 1 ? 3 : 0,
                                 gemm_seconds,
                                 split_tuning_shapes, split < 0 ? 2 : 0, split_seconds);
    if (attention_timed) (void)kiln_vk_tune_attentions(be, attention_tuning_shapes, 2, attention_seconds);
    /* untimed (the timing failed), 128 rows only where nothing else passed its check */
    if (attention_timed && !vk->attention_tuned &&
        (vk->attention[KILN_VK_ATTENTION_SHARED] || vk->attention[KILN_VK_ATTENTION_REGISTERS]))
        vk->attention[KILN_VK_ATTENTION_REGISTERS_128] = false;
    if (vk->pipeline_stats && vk->gemm_tuned)
        fprintf(stderr,
                "kiln vulkan timing: GEMM tiles 64x64 loading 1, 2, 3 K steps ahead, 128x64 loading 1, on "
                "workgroup-scope matrices (0: not timed): %.3f, %.3f, %.3f, %.3f, %.3f ms; kept %ux64 loading %u "
                "(0: the driver)\n",
                1e3 * gemm_seconds[0], 1e3 * gemm_seconds[1], 1e3 * gemm_seconds[2], 1e3 * gemm_seconds[3],
                1e3 * gemm_seconds[4], vk->gemm_rows, vk->gemm_prefetch);
    static const char *const attention_names[] = {"softmax in shared memory", "softmax in registers",
                                                  "softmax in registers on 128 rows"};
    int attention = -1; /* the one preferred */
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++)
        if (vk->attention[a]) attention = a;
    if (vk->pipeline_stats && vk->attention_tuned)
        fprintf(stderr,
                "kiln vulkan timing: attention with its softmax in shared memory, in registers, in registers on 128 "
                "rows: %.3f, %.3f, %.3f ms; kept %s\n",
                1e3 * attention_seconds[0], 1e3 * attention_seconds[1], 1e3 * attention_seconds[2],
                attention_names[attention]);
    if (vk->pipeline_stats && vk->split_k_tuned)
        fprintf(stderr, "kiln vulkan timing: GEMMs whole, K split as estimated: %.3f, %.3f ms; kept %s\n",
                1e3 * split_seconds[0], 1e3 * split_seconds[1], vk->split_k ? "split" : "whole");
    be->compute = vk->coopmat != KILN_VK_COOPMAT_NONE ? KILN_F16 : KILN_F32;
    static const char *const coopmat_names[] = {"", ", cooperative matrix", ", emulated cooperative matrix",
                                                ", cooperative matrix (KHR)"};
    char sms[32] = "";
    if (vk->multiprocessors) snprintf(sms, sizeof sms, ", %u SMs", vk->multiprocessors);
    char ahead[80] = "";
    if (vk->coopmat && vk->gemm_prefetch == 0)
        snprintf(ahead, sizeof ahead, ", GEMM on workgroup-scope matrices%s", vk->gemm_tuned ? " (timed)" : "");
    else if (vk->coopmat && (vk->gemm_prefetch > 1 || vk->gemm_rows != 64 || vk->gemm_tuned))
        snprintf(ahead, sizeof ahead, ", GEMM %sloads %u K step%s ahead%s", vk->gemm_rows == 128 ? "tiles 128x64, " : "",
                 vk->gemm_prefetch, vk->gemm_prefetch > 1 ? "s" : "", vk->gemm_tuned ? " (timed)" : "");
    const char *split_name = !vk->split_k ? ", K never split" : vk->split_k_tuned ? ", K split" : "";
    static const char *const gemm_names[KILN_VK_GEMM_KERNELS] = {
        "GEMM on 64x64 tiles loading 1 K step ahead", "GEMM loading 2 ahead", "GEMM loading 3 ahead",
        "GEMM on 128x64 tiles", "GEMM on workgroup-scope matrices"};
    char failed[320] = "";
    for (int a = 0; a < KILN_VK_ATTENTIONS; a++)
        if (vk->attention_failed[a])
            snprintf(failed + strlen(failed), sizeof failed - strlen(failed), ", %s failed its check",
                     attention_names[a]);
    for (int i = 0; i < KILN_VK_GEMM_KERNELS; i++)
        if (vk->gemm_failed[i])
            snprintf(failed + strlen(failed), sizeof failed - strlen(failed), ", %s failed its check", gemm_names[i]);
    char preferred[64] = "";
    if (attention > KILN_VK_ATTENTION_SHARED || vk->attention_tuned)
        snprintf(preferred, sizeof preferred, ", %s%s", attention_names[attention],
                 vk->attention_tuned ? " (timed)" : "");
    snprintf(be->device_name, sizeof be->device_name, "%.150s (%s, Vulkan %u.%u%s%s%s%s%s%s%s%s%s)", caps.props.deviceName,
             device_type_name(caps.props.deviceType), VK_API_VERSION_MAJOR(caps.props.apiVersion),
             VK_API_VERSION_MINOR(caps.props.apiVersion), sms, vk->f16_storage ? "" : ", no 16-bit storage",
             coopmat_names[vk->coopmat], vk->coopmat && vk->coopmat_n == 8 ? " on 16x8x16" : "", preferred, failed,
             ahead, split_name, vk->split_k_tuned ? " (timed)" : "");
    return KILN_OK;
}

/* The largest device-local memory heap, in bytes. */
static VkDeviceSize device_memory(VkPhysicalDevice pd)
{
    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(pd, &mem);
    VkDeviceSize largest = 0;
    for (uint32_t i = 0; i < mem.memoryHeapCount; i++)
        if ((mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && mem.memoryHeaps[i].size > largest)
            largest = mem.memoryHeaps[i].size;
    return largest;
}

static void describe_device(VkInstance instance, VkPhysicalDevice pd, kiln_device_info *info)
{
    device_caps c;
    device_query(instance, pd, &c);
    snprintf(info->name, sizeof info->name, "%s", c.props.deviceName);
    info->usable = c.missing == NULL;
    info->cpu = c.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    /* what --compute auto would run (kiln_backend_vulkan_create) */
    const char *compute = c.missing ? ""
                          : c.coopmat == KILN_VK_COOPMAT_NV ? "; f16 compute on NVIDIA's cooperative matrices"
                          : c.coopmat == KILN_VK_COOPMAT_KHR
                              ? "; f32 compute (f16 on KHR cooperative matrices with --compute f16)"
                              : "; f32 compute (no cooperative matrices kiln can use)";
    int at = snprintf(info->details, sizeof info->details, "%s, Vulkan %u.%u, %.1f GiB%s",
                      device_type_name(c.props.deviceType), VK_API_VERSION_MAJOR(c.props.apiVersion),
                      VK_API_VERSION_MINOR(c.props.apiVersion), (double)device_memory(pd) / (1 << 30), compute);
    if (c.missing && at > 0 && (size_t)at < sizeof info->details)
        snprintf(info->details + at, sizeof info->details - (size_t)at, "; lacks %s, which kiln needs", c.missing);
    else if (c.workgroup_matrices && at > 0 && (size_t)at < sizeof info->details)
        snprintf(info->details + at, sizeof info->details - (size_t)at,
                 "; workgroup-scope matrices for KILN_VULKAN_GEMM_WORKGROUP=1 or 2");
}

kiln_status kiln_backend_vulkan_devices(kiln_device_info *out, int max, int *count)
{
    *count = 0;
    VkInstance instance;
    TRY(instance_create(&instance));
    uint32_t n;
    VkPhysicalDevice pds[KILN_MAX_DEVICES];
    kiln_status st = enumerate_devices(instance, pds, &n);
    if (st == KILN_OK) {
        int preferred = preferred_device(instance, pds, n, NULL);
        for (uint32_t i = 0; i < n && (int)i < max; i++) {
            describe_device(instance, pds[i], &out[i]);
            out[i].preferred = (int)i == preferred;
            *count = (int)i + 1;
        }
    }
    vkDestroyInstance(instance, NULL);
    return st;
}

kiln_status kiln_backend_vulkan_create(const kiln_backend_options *opt, kiln_backend **out)
{
    *out = NULL;
    kiln_backend *be = calloc(1, sizeof *be);
    kiln_vk *vk = calloc(1, sizeof *vk);
    if (!be || !vk) {
        free(be);
        free(vk);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    be->ops = &kiln_vk_backend_ops;
    be->kind = KILN_BACKEND_VULKAN;
    be->name = "vulkan";
    be->impl = vk;
    kiln_status st = vk_open(be, opt);
    if (st != KILN_OK) {
        kiln_vk_destroy(be);
        return st;
    }
    *out = be;
    return KILN_OK;
}
