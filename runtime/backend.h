/* The backend interface: a table of function pointers, one per op in ops.def
 * plus memory management. CPU, CUDA and Vulkan each fill the whole table; a
 * NULL entry is a gap that the op tests report by name.
 *
 * Calling contract: ops may run asynchronously (GPU backends enqueue them);
 * download() and synchronize() wait for all work enqueued before them. A
 * failing call returns a status with kiln_last_error() set. */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"
#include "ops.h"
#include "tensor.h"

typedef struct kiln_backend kiln_backend;
typedef struct kiln_recording kiln_recording; /* a backend's replayable op sequence */

typedef struct kiln_backend_ops {
    /* Device memory. alloc returns KILN_ERR_OUT_OF_MEMORY naming the bytes
     * asked for. */
    kiln_status (*buffer_alloc)(kiln_backend *be, size_t bytes, kiln_buffer **out);
    void (*buffer_free)(kiln_backend *be, kiln_buffer *buf);

    /* Makes read-only weight bytes that live in host memory (an mmap of a
     * checkpoint) usable by ops. The CPU backend wraps them without copying;
     * GPU backends copy them to the device once. `host` must outlive the
     * returned buffer on the CPU backend. */
    kiln_status (*weights_place)(kiln_backend *be, const void *host, size_t bytes, kiln_buffer **out);

    /* Copies bytes between host memory and a tensor's place in its buffer.
     * upload may return before the device copy is done, but it has read
     * `src` by then: the caller may reuse or free it at once. */
    kiln_status (*upload)(kiln_backend *be, const kiln_tensor *dst, const void *src, size_t bytes);
    kiln_status (*download)(kiln_backend *be, const kiln_tensor *src, void *dst, size_t bytes);

    /* Waits for every enqueued op. */
    kiln_status (*synchronize)(kiln_backend *be);

    /* Optional, for profiling (kiln_graph_profile): the device's own time of
     * the ops enqueued between time_begin and time_end, which waits for them.
     * Timing on the host instead, around a wait for each op, adds a launch
     * and a wake-up to every op: on a GPU that doubled a UNet step's total.
     * time_end leaves *seconds negative where the device cannot time. */
    kiln_status (*time_begin)(kiln_backend *be);
    kiln_status (*time_end)(kiln_backend *be, double *seconds);

    /* Optional (NULL where a backend has none): ops enqueued between
     * record_begin and record_end are recorded instead of run, and replay
     * enqueues the recording again, with the same operands, for a fraction
     * of the launch cost (CUDA: a stream capture into a CUDA graph). Nothing
     * but ops may come in between. record_end with out == NULL discards the
     * recording, reporting nothing (the path after a failed op). */
    kiln_status (*record_begin)(kiln_backend *be);
    kiln_status (*record_end)(kiln_backend *be, kiln_recording **out);
    kiln_status (*replay)(kiln_backend *be, kiln_recording *rec);
    void (*recording_free)(kiln_backend *be, kiln_recording *rec);

    void (*destroy)(kiln_backend *be);

#define KILN_OP(name, nsrc, doc)                                                   \
    kiln_status (*name)(kiln_backend *be, const kiln_##name##_params *p,            \
                        const kiln_tensor *const *src, kiln_tensor *dst);
#include "ops.def"
#undef KILN_OP
} kiln_backend_ops;

typedef enum kiln_backend_kind {
    KILN_BACKEND_CPU,
    KILN_BACKEND_VULKAN,
    KILN_BACKEND_CUDA,
} kiln_backend_kind;

struct kiln_backend {
    const kiln_backend_ops *ops;
    kiln_backend_kind kind;
    const char *name;  /* "cpu", "vulkan", "cuda" */
    char device_name[768];
    int threads;       /* CPU worker threads (CPU backend) */
    kiln_dtype compute; /* what matmul, conv2d and attention compute in (backend_options) */
    void *impl;        /* the backend's own state */
};

typedef struct kiln_backend_options {
    int threads; /* CPU: worker threads, 0 = all cores */
    int device;  /* GPU: device index, -1 = pick (discrete first) */
    /* GPU arithmetic for matmul, conv2d and attention: KILN_F32 (the zero
     * default) matches the CPU reference to 1e-5; KILN_F16 or KILN_BF16 runs
     * them on tensor cores with f32 accumulation (about 1e-2). */
    kiln_dtype compute;
    /* Let the backend choose instead: f16 on CUDA, whose tensor cores are
     * the point of it (diffusers and ComfyUI run fp16 there too), f32
     * elsewhere. The choice is in kiln_backend.compute. */
    bool compute_auto;
} kiln_backend_options;

/* Creates a backend. Backends that were not built, or that find no device at
 * run time, return KILN_ERR_UNSUPPORTED with a message saying which. */
kiln_status kiln_backend_cpu_create(const kiln_backend_options *opt, kiln_backend **out);
kiln_status kiln_backend_vulkan_create(const kiln_backend_options *opt, kiln_backend **out);
kiln_status kiln_backend_cuda_create(const kiln_backend_options *opt, kiln_backend **out);

/* A device a GPU backend can run on, by the index that
 * kiln_backend_options.device takes (`gen --list-devices`). */
typedef struct kiln_device_info {
    char name[256];
    char details[256]; /* its kind and memory, and what kiln would compute there or what it lacks */
    bool usable;
    bool preferred; /* the one a backend takes when given no index */
    bool cpu;       /* a CPU implementing the API (lavapipe), not a GPU */
} kiln_device_info;

#define KILN_MAX_DEVICES 16

/* The devices of a GPU backend, the first max of them; *count gets how many.
 * KILN_ERR_UNSUPPORTED, saying why, where the backend was not built or
 * cannot see any (no loader, no driver, no device). */
kiln_status kiln_backend_vulkan_devices(kiln_device_info *out, int max, int *count);
kiln_status kiln_backend_cuda_devices(kiln_device_info *out, int max, int *count);

/* By name: "cpu", "vulkan", "cuda", or "auto" (CUDA, then Vulkan, then CPU). */
kiln_status kiln_backend_create(const char *name, const kiln_backend_options *opt, kiln_backend **out);

/* "f32", "f16", "bf16" -> the compute dtype of kiln_backend_options; false
 * for anything else. */
bool kiln_compute_from_name(const char *name, kiln_dtype *out);

#endif
