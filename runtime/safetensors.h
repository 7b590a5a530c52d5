/* safetensors files: read through a read-only mmap with zero-copy views,
 * written through a temporary file renamed into place.
 *
 * The reader validates the whole header before handing out anything: the
 * 8-byte length against the file size, a sane header size, well-formed JSON
 * (cJSON), known dtypes, shape x dtype size equal to each byte range, every
 * range inside the data area, no two ranges overlapping. `__metadata__` is kept
 * as string pairs. Every error names the file and, where there is one, the
 * tensor. A GGUF file opens here too (gguf.h): its tensors read as a
 * safetensors file's, its quantized ones dequantized to f16. So does a
 * torch.save file (`.ckpt`, `.pt`, `.pth`, `.bin`; torch_file.h), told by its
 * first bytes: its state dict is written to a safetensors file in TMPDIR
 * first, which is mapped and unlinked at once. */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"
#include "tensor.h"

typedef struct kiln_st_tensor {
    const char *name;
    kiln_dtype dtype;
    int ndim;                       /* 0..KILN_MAX_DIMS (0 = scalar) */
    int64_t shape[KILN_MAX_DIMS];
    const void *data;               /* points into the mmap */
    size_t nbytes;
} kiln_st_tensor;

typedef struct kiln_st_file kiln_st_file;

/* Opens and validates `path`. Errors: KILN_ERR_IO (cannot open/map, a
 * directory, empty), KILN_ERR_FORMAT (anything wrong in the header),
 * KILN_ERR_UNSUPPORTED (a well-formed file with a dtype kiln lacks, such as
 * F64 or BOOL, or a tensor of more than KILN_MAX_DIMS dims). Gaps between
 * tensors and bytes after the last one are allowed. */
kiln_status kiln_st_open(const char *path, kiln_st_file **out);
/* Validates an in-memory image of a file (used by open and by the fuzzer);
 * `data` must outlive the result. `label` names it in errors. */
kiln_status kiln_st_open_memory(const void *data, size_t size, const char *label, kiln_st_file **out);
void kiln_st_close(kiln_st_file *f);

const char *kiln_st_path(const kiln_st_file *f);
size_t kiln_st_count(const kiln_st_file *f);
/* Tensors in the order of their data offsets. */
const kiln_st_tensor *kiln_st_at(const kiln_st_file *f, size_t i);
/* NULL when absent. Lookup is a hash, not a scan. */
const kiln_st_tensor *kiln_st_find(const kiln_st_file *f, const char *name);
/* Elements of t: the product of its shape (1 for a scalar). */
int64_t kiln_st_numel(const kiln_st_tensor *t);
/* A `__metadata__` value, NULL when absent. */
const char *kiln_st_metadata(const kiln_st_file *f, const char *key);

/* Writing. Tensors are given as (name, dtype, shape, bytes); the file appears
 * at `path` only once complete (written to path.tmp-<pid>, then renamed; the
 * temporary file is removed on any failure). The layout is the reference
 * writer's (safetensors.serialize): compact JSON, `__metadata__` first, tensors
 * laid out widest dtype first then by name (so each starts aligned to its
 * element size), the header padded with spaces to a multiple of 8 bytes.
 * Metadata keys keep the given order (the reference writer's is arbitrary). */
typedef struct kiln_st_entry {
    const char *name;
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    const void *data;
} kiln_st_entry;

typedef struct kiln_st_meta {
    const char *key, *value;
} kiln_st_meta;

kiln_status kiln_st_write(const char *path, const kiln_st_entry *entries, size_t n, const kiln_st_meta *meta,
                          size_t nmeta);

/* Produces the `nbytes` bytes of entries[index] into dst. */
typedef kiln_status (*kiln_st_fill_fn)(void *ctx, size_t index, void *dst, size_t nbytes);

/* kiln_st_write for tensors made on demand (a file larger than memory): each
 * entry's `data` is ignored and `fill` is called once per non-empty tensor,
 * in file order, with a buffer the size of the largest tensor. */
kiln_status kiln_st_write_fill(const char *path, const kiln_st_entry *entries, size_t n, const kiln_st_meta *meta,
                               size_t nmeta, kiln_st_fill_fn fill, void *ctx);

/* Reads a tensor as f32 into a new malloc'd array (any float/int dtype is
 * widened). The caller frees it. Errors name the file and tensor. */
kiln_status kiln_st_read_f32(const kiln_st_file *f, const char *name, float **out, size_t *count);

#endif
