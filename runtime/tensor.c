#include "tensor.h"

#include <stdio.h>

static const struct { const char *name; size_t size; } dtype_info[KILN_DTYPE_COUNT] = {
    [KILN_F32] = {"F32", 4},    [KILN_F16] = {"F16", 2},         [KILN_BF16] = {"BF16", 2},
    [KILN_F8_E4M3] = {"F8_E4M3", 1}, [KILN_F8_E5M2] = {"F8_E5M2", 1}, [KILN_I32] = {"I32", 4},
    [KILN_I64] = {"I64", 8},    [KILN_U8] = {"U8", 1},
};

size_t kiln_dtype_size(kiln_dtype dtype) { return dtype < KILN_DTYPE_COUNT ? dtype_info[dtype].size : 0; }

const char *kiln_dtype_name(kiln_dtype dtype) { return dtype < KILN_DTYPE_COUNT ? dtype_info[dtype].name : "?"; }

bool kiln_dtype_from_name(const char *name, kiln_dtype *out)
{
    for (int i = 0; i < KILN_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (kiln_dtype)i;
            return true;
        }
    }
    return false;
}

int64_t kiln_tensor_numel(const kiln_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t kiln_tensor_nbytes(const kiln_tensor *t) { return (size_t)kiln_tensor_numel(t) * kiln_dtype_size(t->dtype); }

const char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

void kiln_convert_to_f32(float *dst, const void *src, kiln_dtype dtype, size_t n)
{
    if (dtype == KILN_F32) {
        memcpy(dst, src, n * sizeof *dst);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = kiln_load_f32(src, dtype, i);
}
