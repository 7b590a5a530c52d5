/* The Vulkan backend's internals, shared by its files:
 *   vulkan_device.c    loading Vulkan (volk), picking and opening a device
 *   vulkan_memory.c    the device memory arena, staging uploads and downloads
 *   vulkan_commands.c  command recording, barriers, submission, pipelines
 *   vulkan_ops.c       one dispatch per op in ops.def, and the vtable
 *
 * Operands reach shaders as buffer device addresses in push constants (see
 * shaders/common.glsl), so there are no descriptor sets: a dispatch is a
 * pipeline bind, a push and a dispatch, and no operand is bounded by
 * maxStorageBufferRange. Ops are recorded into a command buffer and
 * submitted in batches; download() and synchronize() wait for them. */
#ifndef KILN_VULKAN_BACKEND_H
#define KILN_VULKAN_BACKEND_H

#include <stdbool.h>

#include <volk.h>

#include "backend.h"
#include "vulkan_shaders.h"

/* Records "file:line: call: VkResult" and returns KILN_ERR_OUT_OF_MEMORY for
 * the out-of-memory results, KILN_ERR_BACKEND for the others. */
kiln_status kiln_vk_fail_result(VkResult result, const char *file, int line, const char *call);
#define VK_TRY(call)                                                                         \
    do {                                                                                     \
        VkResult vk_try_ = (call);                                                           \
        if (vk_try_ != VK_SUCCESS) return kiln_vk_fail_result(vk_try_, __FILE__, __LINE__, #call); \
    } while (0)

/* A free stretch of a block. */
typedef struct kiln_vk_span {
    VkDeviceSize offset, size;
} kiln_vk_span;

/* One device memory allocation with one buffer over all of it; the arena
 * hands out pieces of blocks. */
typedef struct kiln_vk_block {
    VkDeviceMemory memory;
    VkBuffer buffer;
    VkDeviceAddress address;
    VkDeviceSize size;
    VkDeviceSize used;
    kiln_vk_span *free; /* sorted by offset, never adjacent */
    int nfree, cap;
} kiln_vk_block;

struct kiln_buffer {
    kiln_vk_block *block;
    VkDeviceSize offset; /* in the block */
    VkDeviceSize size;
    VkDeviceAddress address; /* block->address + offset */
};

/* A command buffer with its fence; two alternate so the host records one
 * while the device runs the other. */
typedef struct kiln_vk_slot {
    VkCommandBuffer cmd;
    VkFence fence;
    bool in_flight;
} kiln_vk_slot;

/* Device memory touched since the last barrier. */
typedef struct kiln_vk_range {
    VkDeviceAddress lo, hi;
} kiln_vk_range;
#define KILN_VK_TRACKED 32

typedef struct kiln_vk_pipeline {
    kiln_vk_shader shader;
    uint32_t spec[3]; /* specialization constants 0..2, unused ones 0 */
    VkPipeline pipeline;
    uint32_t registers; /* an invocation's, as the driver reports them; 0: not known */
} kiln_vk_pipeline;

#define KILN_VK_VENDOR_NVIDIA 0x10de

/* The shared memory the tensor-core shaders may use (gemm_coopmat.glsl
 * takes 11 KiB, attention_coopmat.comp up to 31.75 KiB at head dim 256);
 * lavapipe offers exactly this much. */
#define KILN_VK_COOPMAT_SHARED_BYTES (32 * 1024)

/* How f16 compute's tensor-core shaders (shaders/coopmat.glsl) run. */
typedef enum kiln_vk_coopmat {
    KILN_VK_COOPMAT_NONE,     /* no f16 compute: f32 shaders */
    KILN_VK_COOPMAT_NV,       /* VK_NV_cooperative_matrix */
    KILN_VK_COOPMAT_EMULATED, /* the same shaders on plain GLSL matrices, for tests */
    KILN_VK_COOPMAT_KHR,      /* VK_KHR_cooperative_matrix: the 16x8x16 shaders rewritten for it */
} kiln_vk_coopmat;

/* ... and shaders/gemm_workgroup.glsl: its accumulator staged on its way
 * out (64 lines of 68 f32), beside what the driver reserves. */
#define KILN_VK_WORKGROUP_GEMM_SHARED_BYTES (64 * 68 * 4)

/* Kinds of tensor-core GEMM: kiln_vk_gemm_kernels (vulkan_tuning.c). */
#define KILN_VK_GEMM_KERNELS 5

/* f16 compute's tensor-core attentions (vulkan_ops.c, vk_attention), in
 * the order of preference: of those a device may run, the last whose
 * shared memory a head dim fits runs it. */
typedef enum kiln_vk_attention {
    KILN_VK_ATTENTION_SHARED,        /* attention_coopmat.comp: the softmax through shared memory */
    KILN_VK_ATTENTION_REGISTERS,     /* attention_registers.comp: the softmax in registers, 64 query rows */
    KILN_VK_ATTENTION_REGISTERS_128, /* ... on 128 query rows a workgroup */
    KILN_VK_ATTENTIONS
} kiln_vk_attention;

typedef struct kiln_vk {
    VkInstance instance;
    VkPhysicalDevice physical;
    VkDevice device;
    struct VolkDeviceTable fn; /* device-level entry points of this device */
    VkQueue queue;
    uint32_t queue_family;
    uint32_t timestamp_bits;     /* the queue's timestampValidBits (0: it cannot time) */
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties memory_props;
    VkDeviceSize max_allocation; /* maxMemoryAllocationSize */
    bool f16_storage;            /* storageBuffer16BitAccess enabled */
    kiln_vk_coopmat coopmat;     /* f16 compute: tensor-core shaders, real or emulated */
    uint32_t coopmat_n;          /* they multiply 16x16x16 or 16x8x16 blocks (shaders/coopmat.glsl's CM_N) */
    bool workgroup_matrices;     /* VK_NV_cooperative_matrix2's workgroup scope enabled (gemm_workgroup.glsl) */
    bool attention[KILN_VK_ATTENTIONS];        /* which tensor-core attentions may run (vulkan_device.c) */
    bool attention_failed[KILN_VK_ATTENTIONS]; /* ... missed the check when the device opened (vulkan_tuning.c) */
    bool attention_tuned;                      /* ... as timed on this device when it opened */
    bool split_k;                /* GEMMs may split K (vulkan_ops.c); KILN_VULKAN_SPLIT_K=0|1 */
    bool split_k_tuned;          /* ... as timed on this device when it opened */
    uint32_t gemm_prefetch;      /* the tensor-core GEMMs load operands 1, 2 or 3 K steps ahead (vulkan_device.c), */
    uint32_t gemm_rows;          /* ... into tiles of C of 64 or (loading 1 ahead) 128 rows by 64 columns; */
                                 /* 0 ahead: 128 rows on workgroup-scope matrices, the driver's to load */
    bool gemm_tuned;             /* these two as timed on this device when it opened */
    bool gemm_allowed[KILN_VK_GEMM_KERNELS]; /* which of kiln_vk_gemm_kernels may run; where none may, */
    bool gemm_failed[KILN_VK_GEMM_KERNELS];  /* all having missed the check at open, GEMMs run in f32 */
    size_t conv_col_bytes;       /* the tensor-core conv's column matrix at most (vulkan_ops.c) */
    uint32_t multiprocessors;    /* SMs, where NVIDIA's driver says (VK_NV_shader_sm_builtins); else 0 */
    bool pipeline_stats;         /* KILN_VULKAN_PIPELINE_STATS=1 on a driver that reports them */
    bool pipeline_registers;     /* pipelines' register counts are read (NVIDIA, vulkan_commands.c) */

    /* the arena */
    kiln_vk_block **blocks;
    int nblocks, blocks_cap;
    /* ops' scratch space (kiln_vk_scratch): the last is current, the others
     * outgrown but kept for the recordings that use them */
    kiln_buffer **scratch;
    int nscratch;

    /* host-visible staging ring for uploads and downloads; space is reclaimed
     * when all submitted work has finished */
    VkBuffer staging;
    VkDeviceMemory staging_memory;
    unsigned char *staging_map;
    VkDeviceSize staging_size, staging_head;

    VkCommandPool command_pool;
    kiln_vk_slot slots[2];
    int current;   /* the slot being recorded */
    bool recording;
    int batch;     /* commands recorded in the current slot */
    bool barrier_first; /* a new command buffer: put a barrier before its first command */
    VkCommandBuffer record_cmd; /* between record_begin and record_end: ops go here */
    VkFence replay_fence;       /* of the last replay's submission */
    bool replay_in_flight;
    kiln_vk_range reads[KILN_VK_TRACKED], writes[KILN_VK_TRACKED];
    int nreads, nwrites;
    /* The last f16 copy of a tensor-core matmul's x (vulkan_ops.c), which
     * the next matmul of the same x uses again (a transformer block's q, k
     * and v projections share one) while no command has written x or the
     * copy since; forgotten with the tracking at every new command buffer,
     * as what ran between buffers (a replay) is not tracked. */
    struct {
        bool valid;
        kiln_vk_range of, at; /* x, and the copy in scratch */
        kiln_tensor copy;
    } f16_copy;

    VkQueryPool timer; /* two timestamps for time_begin/time_end, made on first use */

    VkPipelineLayout pipeline_layout; /* no descriptor sets, 128 bytes of push constants */
    VkShaderModule modules[KILN_VK_SHADER_COUNT];
    kiln_vk_pipeline *pipelines;
    int npipelines, pipelines_cap;
} kiln_vk;

static inline kiln_vk *kiln_vk_of(kiln_backend *be) { return (kiln_vk *)be->impl; }

/* vulkan_device.c: the vtable's destroy entry. */
void kiln_vk_destroy(kiln_backend *be);

/* vulkan_memory.c: the backend's memory entry points. */
kiln_status kiln_vk_buffer_alloc(kiln_backend *be, size_t bytes, kiln_buffer **out);
void kiln_vk_buffer_free(kiln_backend *be, kiln_buffer *buf);
kiln_status kiln_vk_weights_place(kiln_backend *be, const void *host, size_t bytes, kiln_buffer **out);
kiln_status kiln_vk_upload(kiln_backend *be, const kiln_tensor *dst, const void *src, size_t bytes);
kiln_status kiln_vk_download(kiln_backend *be, const kiln_tensor *src, void *dst, size_t bytes);
kiln_status kiln_vk_staging_init(kiln_vk *vk);
/* At least `bytes` of device memory for an op's intermediate results, as a
 * flat f32 tensor. The same memory serves every op that asks (barriers order
 * them like any operands), so it holds nothing from one op to the next
 * (but for kiln_vk.f16_copy, which watches for writes over it). */
kiln_status kiln_vk_scratch(kiln_backend *be, size_t bytes, kiln_tensor *out);
/* Frees every block and the staging buffer (the device must be idle). */
void kiln_vk_memory_release(kiln_vk *vk);

/* vulkan_commands.c */
kiln_status kiln_vk_commands_init(kiln_vk *vk);
void kiln_vk_commands_release(kiln_vk *vk);
/* The command buffer being recorded, begun if none is. */
kiln_status kiln_vk_recording(kiln_vk *vk, VkCommandBuffer *out);
/* The registers an invocation of a pipeline takes, as the driver reports
 * them (vk->pipeline_registers), building the pipeline if it is not yet
 * built; 0 where they are not known. */
kiln_status kiln_vk_pipeline_registers(kiln_vk *vk, kiln_vk_shader shader, const uint32_t spec[3], uint32_t *registers);
/* How many workgroups of `threads` invocations of `registers` registers
 * each fit on an NVIDIA SM: 64K registers, given out a warp at a time in
 * units of 256 (8 an invocation), at most 64 warps and 32 workgroups. */
uint32_t kiln_vk_nvidia_workgroups_per_sm(uint32_t registers, uint32_t threads);
/* The device memory a tensor spans. */
kiln_vk_range kiln_vk_tensor_range(const kiln_tensor *t);
/* Puts a barrier before the next command if it reads memory written, or
 * writes memory read or written, since the last barrier. */
void kiln_vk_order_access(kiln_vk *vk, VkCommandBuffer cmd, const kiln_vk_range *reads, int nreads,
                          kiln_vk_range write);
/* Hands the recorded commands to the queue without waiting. */
kiln_status kiln_vk_submit(kiln_vk *vk);
/* Submits and waits for everything submitted; staging space is free after. */
kiln_status kiln_vk_finish(kiln_vk *vk);
/* The vtable's recording entries: a recording is one command buffer holding
 * a whole run of ops (a UNet step), submitted again by each replay. */
kiln_status kiln_vk_record_begin(kiln_backend *be);
kiln_status kiln_vk_record_end(kiln_backend *be, kiln_recording **out);
kiln_status kiln_vk_replay(kiln_backend *be, kiln_recording *rec);
void kiln_vk_recording_free(kiln_backend *be, kiln_recording *rec);
/* The vtable's time_begin/time_end: timestamp queries around the ops. */
kiln_status kiln_vk_time_begin(kiln_backend *be);
kiln_status kiln_vk_time_end(kiln_backend *be, double *seconds);

#define KILN_VK_DISPATCH_READS 4
#define KILN_VK_PUSH_BYTES 128 /* every pipeline's push constants: the least maxPushConstantsSize Vulkan guarantees */
/* One compute dispatch: its shader variant, specialization constants, push
 * constants, grid, and the tensors it reads and writes (for barriers). */
typedef struct kiln_vk_dispatch {
    kiln_vk_shader shader;
    uint32_t spec[3];
    const void *push;
    uint32_t push_bytes;
    uint32_t groups[3];
    const kiln_tensor *reads[KILN_VK_DISPATCH_READS]; /* NULL where unused */
    const kiln_tensor *write;
} kiln_vk_dispatch;
kiln_status kiln_vk_dispatch_record(kiln_vk *vk, const kiln_vk_dispatch *d);

/* vulkan_ops.c: the vtable. */
extern const kiln_backend_ops kiln_vk_backend_ops;

/* vulkan_tuning.c: alternatives timed on the device (a device without
 * timestamps keeps what it had). The GEMM choices, on one set of operands:
 * the tensor-core matmul at each of the ntile {M, N, K} in each of
 * KILN_VK_GEMM_KERNELS ways (kiln_vk_gemm_kernels), the fastest kept in
 * vk->gemm_prefetch and vk->gemm_rows (tile_seconds, if not NULL, gets
 * each one's total in that order); then the matmul at each of the nsplit
 * shapes whole and split along K as vulkan_ops.c estimates best, splitting
 * kept only if that was no slower (vk->split_k; split_seconds, if not NULL,
 * gets the totals in that order). Either count may be 0, which leaves that
 * choice as it was. */
extern const struct kiln_vk_gemm_kernel {
    uint32_t prefetch, rows; /* prefetch 0: gemm_workgroup.glsl */
} kiln_vk_gemm_kernels[KILN_VK_GEMM_KERNELS];
#define KILN_VK_GEMM_WORKGROUP 4 /* its index there */
/* The index in kiln_vk_gemm_kernels of the kind vk->gemm_prefetch and
 * vk->gemm_rows name. */
int kiln_vk_gemm_kind(const kiln_vk *vk);
kiln_status kiln_vk_tune_gemms(kiln_backend *be, const uint32_t (*tile_shapes)[3], int ntile,
                               double tile_seconds[KILN_VK_GEMM_KERNELS], const uint32_t (*split_shapes)[3],
                               int nsplit, double split_seconds[2]);
/* Runs each tensor-core GEMM kind this device may run (vk->gemm_allowed)
 * on small matmuls and a conv against the CPU's reference, and takes away
 * (marked failed) the one whose relative L2 error exceeds tolerance (or is
 * not finite); where that was the kind in use, the first one left takes
 * over. errors, if not NULL, gets each one's worst error in
 * kiln_vk_gemm_kernels' order (0 where it did not run). */
kiln_status kiln_vk_check_gemms(kiln_backend *be, double tolerance, double errors[KILN_VK_GEMM_KERNELS]);
/* Where more than one tensor-core attention may run (vk->attention), times
 * each at each of the nshapes {B, H, T, D} (self-attention) and leaves the
 * fastest the one preferred (those after it no longer allowed; those before
 * it stay, for the head dims it does not fit); seconds, if not NULL, gets
 * their totals in kiln_vk_attention's order (0 where one did not run). */
kiln_status kiln_vk_tune_attentions(kiln_backend *be, const uint32_t (*shapes)[4], int nshapes,
                                    double seconds[KILN_VK_ATTENTIONS]);
/* Runs each tensor-core attention this device may run (vk->attention) on
 * small cases against the CPU's reference, and takes away (marked failed)
 * the one whose relative L2 error exceeds tolerance (or is not finite):
 * attention then runs another, or attention.comp in f32 (vk_attention).
 * errors, if not NULL, gets each one's worst error in kiln_vk_attention's
 * order (0 where it did not run). */
kiln_status kiln_vk_check_attentions(kiln_backend *be, double tolerance, double errors[KILN_VK_ATTENTIONS]);
/* Whether this device's tensor-core shaders lay a 16x16 product out with
 * every row in one quad of lanes, as attention_registers.comp needs:
 * shaders/coopmat_layout.comp, run once. */
kiln_status kiln_vk_products_in_quads(kiln_backend *be, bool *quads);

#endif
