/* Files written by torch.save (`.pt`, `.bin`, `.ckpt`): a zip archive
 * holding `<name>/data.pkl`, a pickle of the saved object, and each tensor
 * storage's bytes as `<name>/data/<key>`.
 *
 * The pickle is read by a restricted unpickler, in the spirit of
 * torch.load(weights_only=True): it runs no code. It knows the opcodes
 * torch.save emits (protocols 2 to 5) and builds plain values: None,
 * booleans, integers (wider ones opaque), floats, strings, tuples, lists
 * (sets read as lists), dicts (in insertion order), and tensors (torch._utils._rebuild_tensor_v2 on a persistent
 * storage, also under _rebuild_parameter). Any other callable gives an
 * opaque object, which is an error only where a caller needs its value.
 * Every length, index and offset is checked; errors name the file. The old
 * (pre-1.6, non-zip) torch.save format is refused by name. */
#ifndef KILN_TORCH_FILE_H
#define KILN_TORCH_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"
#include "tensor.h"

typedef enum kiln_py_kind {
    KILN_PY_NONE,
    KILN_PY_BOOL,
    KILN_PY_INT,
    KILN_PY_FLOAT,
    KILN_PY_STR,
    KILN_PY_TUPLE,
    KILN_PY_LIST,
    KILN_PY_DICT,
    KILN_PY_TENSOR,
    KILN_PY_STORAGE, /* a tensor storage, as a persistent id names it */
    KILN_PY_OBJECT,  /* a callable (s: its "module.name") or what one kiln does not know made */
} kiln_py_kind;

#define KILN_PY_MAX_DIMS 8

typedef struct kiln_py_value kiln_py_value;
struct kiln_py_value {
    kiln_py_kind kind;
    int64_t i;            /* BOOL, INT */
    double f;             /* FLOAT */
    char *s;              /* STR (UTF-8, NUL-terminated); STORAGE: its key (its bytes are
                             data/<key>); OBJECT: the callable's "module.name" */
    kiln_py_value **items; /* TUPLE, LIST: the items; DICT: the values */
    kiln_py_value **keys;  /* DICT: the keys, keys[i] for items[i] */
    size_t n, cap;
    const char *type;     /* STORAGE, TENSOR: the storage type's name ("FloatStorage", ...) */
    int64_t numel;        /* STORAGE: elements */
    const kiln_py_value *storage; /* TENSOR: */
    struct {
        int64_t offset;   /* in elements */
        int ndim;
        int64_t shape[KILN_PY_MAX_DIMS], stride[KILN_PY_MAX_DIMS];
    } tensor;
};

typedef struct kiln_torch_file kiln_torch_file;

/* Opens `path` and unpickles its object. Errors: KILN_ERR_IO (cannot open or
 * read), KILN_ERR_FORMAT (not a zip of torch.save's, a malformed pickle),
 * KILN_ERR_UNSUPPORTED (the legacy format, an opcode or storage type kiln
 * does not read). */
kiln_status kiln_torch_open(const char *path, kiln_torch_file **out);
void kiln_torch_close(kiln_torch_file *f);
const kiln_py_value *kiln_torch_root(const kiln_torch_file *f);

/* The value under string key `key` of dict `d` (NULL: none, or d no dict). */
const kiln_py_value *kiln_py_dict_get(const kiln_py_value *d, const char *key);
int64_t kiln_py_tensor_numel(const kiln_py_value *t);

/* A tensor's elements in row-major order as f32 (f32, f16, bf16 and f64
 * storages), into a new malloc'd array of kiln_py_tensor_numel floats. */
kiln_status kiln_torch_read_f32(const kiln_torch_file *f, const kiln_py_value *t, float **out);

/* The tensors of a torch.save file as a safetensors file at `out`, as
 * ComfyUI's load_torch_file and spandrel find a model's state dict in it: the
 * dict under "model_state_dict", "state_dict" (Lightning's checkpoints),
 * "params_ema", "params-ema", "params", "model" or "net" where there is one,
 * the only dict of a dict of one; keys without a "module." or "netG." that all
 * share; dicts and lists within it flattened to dotted names, list items
 * and the top dict's integer keys by their numbers (an IP-Adapter's
 * image_proj and ip_adapter; an A1111 hypernetwork's
 * `768.0.linear.0.weight`, the first of dim 768's two layer stacks). Each
 * tensor keeps its type (doubles as f32, bools as u8); other values (a
 * step count, a name, an optimizer's state) and LDM's
 * EMA copy of the UNet (`model_ema.*`, which no loader reads) are left out.
 * Errors name `path`: no dict of tensors, more dims than kiln reads. */
kiln_status kiln_torch_to_safetensors(const char *path, const char *out);

/* Whether a file of `size` bytes that begins with `data` is a torch.save
 * file: a zip archive, or a bare pickle as the legacy format's (which
 * kiln_torch_open refuses by name), whose first eight bytes are no
 * safetensors header length that fits the file. */
bool kiln_torch_magic(const void *data, size_t size);

#endif
