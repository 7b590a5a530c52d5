/* libFuzzer target for the torch.save reader: the restricted unpickler and
 * what is built on it (the tensors' elements, the state dict flattened into
 * a safetensors file, as a checkpoint, LoRA or hypernetwork `.pt` is read).
 * Any input must give KILN_OK or an error, never a crash, a leak, a read
 * outside the storages or an unbounded recursion.
 *
 * The input is a pickle stream, optionally followed by a 0xff 0x00 pair and
 * the bytes of the storages: the harness puts them in a zip as torch.save
 * lays one out (`archive/data.pkl`, and the rest as storages "0" to "3"),
 * because mutations of a whole zip rarely reach the pickle. Every tensor of
 * an accepted file is read; the file is then written as safetensors and
 * that read back.
 *
 * Build: cmake -DCMAKE_C_COMPILER=clang -DKILN_FUZZ=ON
 * Seeds: the pickles of the test data's torch.save files,
 *        for f in tests/data/torch_files/*.pt tests/data/hypernetwork/*.pt; do
 *            unzip -p "$f" '*data.pkl' > "CORPUS_DIR/$(basename "$f").pkl"; done
 * Run:   bin/fuzz_torch_file -max_total_time=300 CORPUS_DIR */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zip.h>

#include "safetensors.h"
#include "torch_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char zip_path[64], st_path[64];

static void make_paths(void)
{
    if (zip_path[0]) return;
    snprintf(zip_path, sizeof zip_path, "/tmp/fuzz-torch-%d.pt", (int)getpid());
    snprintf(st_path, sizeof st_path, "/tmp/fuzz-torch-%d.safetensors", (int)getpid());
}

/* The pickle and storages as a torch.save zip at zip_path; false where
 * libzip would not write it. */
static bool write_zip(const uint8_t *pickle, size_t pickle_size, const uint8_t *storage, size_t storage_size)
{
    int err;
    zip_t *z = zip_open(zip_path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!z) return false;
    bool ok = true;
    zip_source_t *s = zip_source_buffer(z, pickle, pickle_size, 0);
    ok = s && zip_file_add(z, "archive/data.pkl", s, ZIP_FL_OVERWRITE) >= 0;
    if (!ok && s) zip_source_free(s);
    for (int i = 0; i < 4 && ok; i++) {
        char name[32];
        snprintf(name, sizeof name, "archive/data/%d", i);
        zip_source_t *d = zip_source_buffer(z, storage, storage_size, 0);
        ok = d && zip_file_add(z, name, d, ZIP_FL_OVERWRITE) >= 0;
        if (!ok && d) zip_source_free(d);
    }
    if (!ok) {
        zip_discard(z);
        return false;
    }
    return zip_close(z) == 0;
}

/* Reads every tensor under v (bounded, as the reader bounds nesting). */
static void read_tensors(const kiln_torch_file *f, const kiln_py_value *v, int depth)
{
    if (!v || depth > 16) return;
    if (v->kind == KILN_PY_TENSOR) {
        float *x;
        if (kiln_torch_read_f32(f, v, &x) == KILN_OK) free(x);
        return;
    }
    if (v->kind == KILN_PY_TUPLE || v->kind == KILN_PY_LIST || v->kind == KILN_PY_DICT)
        for (size_t i = 0; i < v->n; i++) read_tensors(f, v->items[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_paths();
    size_t pickle_size = size;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == 0xff && data[i + 1] == 0x00) {
            pickle_size = i;
            break;
        }
    const uint8_t *storage = pickle_size < size ? data + pickle_size + 2 : (const uint8_t *)"";
    const size_t storage_size = pickle_size < size ? size - pickle_size - 2 : 0;
    if (!write_zip(data, pickle_size, storage, storage_size)) return 0;
    kiln_torch_file *f;
    if (kiln_torch_open(zip_path, &f) == KILN_OK) {
        read_tensors(f, kiln_torch_root(f), 0);
        kiln_torch_close(f);
        if (kiln_torch_to_safetensors(zip_path, st_path) == KILN_OK) {
            kiln_st_file *st;
            if (kiln_st_open(st_path, &st) == KILN_OK) {
                for (size_t i = 0; i < kiln_st_count(st); i++) {
                    float *x;
                    size_t n;
                    if (kiln_st_read_f32(st, kiln_st_at(st, i)->name, &x, &n) == KILN_OK) free(x);
                }
                kiln_st_close(st);
            }
        }
    }
    unlink(st_path);
    return 0;
}
