/* torch.save files through the restricted unpickler: the files torch 2.x
 * wrote for tests/data/embeddings read to their values, and archives built
 * here byte by byte, well-formed and not: each bad one refused with an
 * error naming the file and what is wrong, never a crash (run under ASan in
 * the sanitizer build). */
#include "kiln_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zip.h>

#include "byte_builder.h"
#include "safetensors.h"
#include "torch_file.h"

static char scratch[4096];

/* A file of this process's in the temporary folder (the sanitizer build runs beside the main one). */
static const char *scratch_path(const char *name)
{
    snprintf(scratch, sizeof scratch, "%s/kiln_%d_%s", P_tmpdir, (int)getpid(), name);
    return scratch;
}

/* A pickle written opcode by opcode. */
typedef byte_builder pickle;

static void op(pickle *p, const char *ops) { put_bytes(p, ops, strlen(ops)); }
static void str(pickle *p, const char *s) /* BINUNICODE */
{
    const uint32_t n = (uint32_t)strlen(s);
    const unsigned char head[5] = {'X', n & 255, (n >> 8) & 255, (n >> 16) & 255, n >> 24};
    put_bytes(p, head, 5);
    put_bytes(p, s, n);
}
static void small_int(pickle *p, int v) /* BININT1 */
{
    const unsigned char b[2] = {'K', (unsigned char)v};
    put_bytes(p, b, 2);
}

/* A tensor: _rebuild_tensor_v2 of storage '0' (`numel` floats) at
 * `offset`, size (rows, cols), row-major strides; under _rebuild_parameter
 * where `parameter`. */
static void put_tensor(pickle *p, int numel, int offset, int rows, int cols, bool parameter)
{
    if (parameter) op(p, "ctorch._utils\n_rebuild_parameter\n(");
    op(p, "ctorch._utils\n_rebuild_tensor_v2\n((");
    str(p, "storage");
    op(p, "ctorch\nFloatStorage\n");
    str(p, "0");
    str(p, "cpu");
    small_int(p, numel);
    op(p, "tQ");
    small_int(p, offset);
    small_int(p, rows), small_int(p, cols);
    op(p, "\x86");
    small_int(p, cols), small_int(p, 1);
    op(p, "\x86\x89" "ccollections\nOrderedDict\n)RtR");
    if (parameter) op(p, "\x88" "ccollections\nOrderedDict\n)RtR");
}

/* {'emb': tensor(...)} */
static pickle tensor_dict(int numel, int offset, int rows, int cols, bool parameter)
{
    pickle p = {.n = 0};
    op(&p, "\x80\x02}(");
    str(&p, "emb");
    put_tensor(&p, numel, offset, rows, cols, parameter);
    op(&p, "u.");
    return p;
}

/* An archive as torch.save lays it out: archive/data.pkl, archive/data/0. */
static const char *write_archive(const char *name, const pickle *p, const void *storage, size_t storage_bytes)
{
    scratch_path(name);
    unlink(scratch);
    int err;
    zip_t *z = zip_open(scratch, ZIP_CREATE | ZIP_TRUNCATE, &err);
    assert_non_null(z);
    zip_source_t *s = zip_source_buffer(z, p->data, p->n, 0);
    assert_true(zip_file_add(z, "archive/data.pkl", s, ZIP_FL_OVERWRITE) >= 0);
    if (storage) {
        s = zip_source_buffer(z, storage, storage_bytes, 0);
        assert_true(zip_file_add(z, "archive/data/0", s, ZIP_FL_OVERWRITE) >= 0);
    }
    assert_int_equal(zip_close(z), 0);
    return scratch;
}

static void refused(const char *path, kiln_status code, const char *says)
{
    kiln_torch_file *f = NULL;
    const kiln_status st = kiln_torch_open(path, &f);
    if (st == KILN_OK) {
        /* a pickle that parses may still hold a tensor that cannot be read */
        const kiln_py_value *t = kiln_py_dict_get(kiln_torch_root(f), "emb");
        float *v = NULL;
        assert_non_null(t);
        assert_int_equal(kiln_torch_read_f32(f, t, &v), code);
        assert_null(v);
        kiln_torch_close(f);
    } else {
        assert_int_equal(st, code);
        assert_null(f);
    }
    if (!strstr(kiln_last_error(), says) || !strstr(kiln_last_error(), path))
        fail_msg("%s: '%s' does not name the file and '%s'", path, kiln_last_error(), says);
    print_message("  refused: %s\n", kiln_last_error());
    if (strncmp(path, P_tmpdir, strlen(P_tmpdir)) == 0) unlink(path);
}

/* The files torch wrote: A1111's dict (a Parameter, an int, strings), the
 * f16 one, diffusers' one-vector dict. */
static void files_torch_wrote(void **state)
{
    (void)state;
    kiln_torch_file *f;
    assert_kiln_ok(kiln_torch_open(kiln_test_data("embeddings/legacy.pt"), &f));
    const kiln_py_value *root = kiln_torch_root(f);
    assert_int_equal(root->kind, KILN_PY_DICT);
    const kiln_py_value *step = kiln_py_dict_get(root, "step"), *name = kiln_py_dict_get(root, "name");
    assert_true(step && step->kind == KILN_PY_INT && step->i == 1500);
    assert_true(name && name->kind == KILN_PY_STR && strcmp(name->s, "legacy") == 0);
    const kiln_py_value *params = kiln_py_dict_get(root, "string_to_param");
    assert_true(params && params->kind == KILN_PY_DICT && params->n == 1);
    const kiln_py_value *t = params->items[0];
    assert_int_equal(t->kind, KILN_PY_TENSOR);
    assert_int_equal(t->tensor.ndim, 2);
    assert_true(t->tensor.shape[0] == 2 && t->tensor.shape[1] == 32);
    float *v;
    assert_kiln_ok(kiln_torch_read_f32(f, t, &v));
    free(v);
    kiln_torch_close(f);

    assert_kiln_ok(kiln_torch_open(kiln_test_data("embeddings/half.pt"), &f));
    t = kiln_py_dict_get(kiln_torch_root(f), "string_to_param")->items[0];
    assert_string_equal(t->type, "HalfStorage");
    assert_true(t->tensor.shape[0] == 4 && t->tensor.shape[1] == 32);
    kiln_torch_close(f);

    assert_kiln_ok(kiln_torch_open(kiln_test_data("embeddings/learned_embeds.bin"), &f));
    root = kiln_torch_root(f);
    t = kiln_py_dict_get(root, "<cat-toy>");
    assert_true(root->n == 1 && t && t->kind == KILN_PY_TENSOR && t->tensor.ndim == 1 && t->tensor.shape[0] == 32);
    kiln_torch_close(f);
}

/* Built here: the values come back through offsets and parameters. */
static void archives_built_here(void **state)
{
    (void)state;
    const float storage[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const pickle p = tensor_dict(8, 2, 2, 3, true);
    const char *path = write_archive("kiln_torch_ok.pt", &p, storage, sizeof storage);
    kiln_torch_file *f;
    assert_kiln_ok(kiln_torch_open(path, &f));
    const kiln_py_value *t = kiln_py_dict_get(kiln_torch_root(f), "emb");
    assert_non_null(t);
    float *v;
    assert_kiln_ok(kiln_torch_read_f32(f, t, &v));
    const float want[6] = {3, 4, 5, 6, 7, 8};
    assert_memory_equal(v, want, sizeof want);
    free(v);
    kiln_torch_close(f);
    unlink(path);

    /* what a trainer's hyperparameters pickle into, at protocol 4: an integer
     * wider than 64 bits, a set and a frozenset, POP_MARK, DUP and POP, NEWOBJ_EX */
    pickle q = {.n = 0};
    op(&q, "\x80\x04}(");
    str(&q, "big");
    put_bytes(&q, "\x8a\x0b\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 13); /* 2**80 + 1 */
    str(&q, "set");
    op(&q, "\x8f(K\x01K\x02\x90");
    str(&q, "frozen");
    op(&q, "(K\x03\x91");
    str(&q, "popped");
    op(&q, "(K\x09K\x09" "1K\x07");
    str(&q, "dup");
    op(&q, "K\x04" "2" "0");
    str(&q, "object");
    op(&q, "chparams\nNamespace\n)}\x92");
    op(&q, "u.");
    path = write_archive("kiln_torch_opcodes.pt", &q, NULL, 0);
    assert_kiln_ok(kiln_torch_open(path, &f));
    const kiln_py_value *root = kiln_torch_root(f);
    assert_int_equal(root->n, 6);
    assert_int_equal(kiln_py_dict_get(root, "big")->kind, KILN_PY_OBJECT);
    const kiln_py_value *set = kiln_py_dict_get(root, "set"), *frozen = kiln_py_dict_get(root, "frozen");
    assert_true(set->kind == KILN_PY_LIST && set->n == 2 && set->items[1]->i == 2);
    assert_true(frozen->kind == KILN_PY_LIST && frozen->n == 1 && frozen->items[0]->i == 3);
    assert_int_equal(kiln_py_dict_get(root, "popped")->i, 7);
    assert_int_equal(kiln_py_dict_get(root, "dup")->i, 4);
    assert_string_equal(kiln_py_dict_get(root, "object")->s, "hparams.Namespace");
    kiln_torch_close(f);
    unlink(path);
}

/* Flattened to safetensors: the top dict's integer keys and the lists
 * under them by their numbers (an A1111 hypernetwork's {768: [{'w': t}]}),
 * an optimizer's state (integer keys further down) left out. */
static void nested_keys_flattened(void **state)
{
    (void)state;
    const float storage[4] = {1, 2, 3, 4};
    pickle p = {.n = 0};
    op(&p, "\x80\x02}(");
    put_bytes(&p, "M\x00\x03", 3); /* BININT2 768 */
    op(&p, "](}(");
    str(&p, "w");
    put_tensor(&p, 4, 0, 2, 2, false);
    op(&p, "ue");
    str(&p, "optimizer");
    op(&p, "}(");
    str(&p, "state");
    op(&p, "}(");
    small_int(&p, 0);
    op(&p, "}(");
    str(&p, "exp_avg");
    put_tensor(&p, 4, 0, 2, 2, false);
    op(&p, "uuuu.");
    const char *path = write_archive("kiln_torch_nested.pt", &p, storage, sizeof storage);
    char out[600];
    snprintf(out, sizeof out, "%s.safetensors", path);
    assert_kiln_ok(kiln_torch_to_safetensors(path, out));
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(out, &f));
    assert_int_equal(kiln_st_count(f), 1);
    float *w;
    size_t n;
    assert_kiln_ok(kiln_st_read_f32(f, "768.0.w", &w, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(w, storage, sizeof storage);
    free(w);
    kiln_st_close(f);
    unlink(out);
    unlink(path);
}

static void bad_files_refused(void **state)
{
    (void)state;
    const float storage[4] = {1, 2, 3, 4};
    pickle p;

    p = tensor_dict(4, 0, 2, 3, false); /* 6 elements of a 4-element storage */
    refused(write_archive("kiln_torch_past.pt", &p, storage, sizeof storage), KILN_ERR_FORMAT, "past its storage");
    p = tensor_dict(4, 0, 2, 2, false);
    refused(write_archive("kiln_torch_short.pt", &p, storage, 8), KILN_ERR_FORMAT, "holds 8 bytes");
    refused(write_archive("kiln_torch_nodata.pt", &p, NULL, 0), KILN_ERR_FORMAT, "not in the archive");
    /* an expanded view of one element to 255^6 elements (strides 0): more than kiln reads */
    p = (pickle){.n = 0};
    op(&p, "\x80\x02}(");
    str(&p, "emb");
    op(&p, "ctorch._utils\n_rebuild_tensor_v2\n((");
    str(&p, "storage");
    op(&p, "ctorch\nFloatStorage\n");
    str(&p, "0");
    str(&p, "cpu");
    small_int(&p, 1);
    op(&p, "tQ");
    small_int(&p, 0);
    op(&p, "(");
    for (int d = 0; d < 6; d++) small_int(&p, 255);
    op(&p, "t(");
    for (int d = 0; d < 6; d++) small_int(&p, 0);
    op(&p, "t\x89" "ccollections\nOrderedDict\n)RtRu.");
    refused(write_archive("kiln_torch_expanded.pt", &p, storage, 4), KILN_ERR_FORMAT, "more elements than kiln reads");
    p = tensor_dict(4, 0, 2, 2, false);
    p.n -= 1; /* no STOP */
    refused(write_archive("kiln_torch_nostop.pt", &p, storage, sizeof storage), KILN_ERR_FORMAT, "no STOP");
    p = (pickle){.n = 0};
    op(&p, "\x80\x02h\x05.");
    refused(write_archive("kiln_torch_memo.pt", &p, NULL, 0), KILN_ERR_FORMAT, "memo key never set");
    p = (pickle){.n = 0};
    op(&p, "\x80\x02}u.");
    refused(write_archive("kiln_torch_mark.pt", &p, NULL, 0), KILN_ERR_FORMAT, "no mark");
    p = (pickle){.n = 0};
    op(&p, "\x80\x02(\x82\x01.");
    refused(write_archive("kiln_torch_ext.pt", &p, NULL, 0), KILN_ERR_UNSUPPORTED, "opcode 0x82");
    p = (pickle){.n = 0};
    put_bytes(&p, "\x80\x02X\xff\xff\x00\x00" "ab.", 10);
    refused(write_archive("kiln_torch_string.pt", &p, NULL, 0), KILN_ERR_FORMAT, "string past the end");
    p = (pickle){.n = 0};
    op(&p, "\x80\x02" "ctorch\nFloatStorage\n)R.");
    kiln_torch_file *f;
    const char *path = write_archive("kiln_torch_object.pt", &p, NULL, 0);
    assert_kiln_ok(kiln_torch_open(path, &f)); /* an unknown callable's result: an opaque object */
    assert_int_equal(kiln_torch_root(f)->kind, KILN_PY_OBJECT);
    kiln_torch_close(f);
    unlink(path);

    /* not archives: torch's pre-1.6 format, anything else, a zip without data.pkl, a cut file */
    scratch_path("kiln_torch_legacy.pt");
    FILE *fp = fopen(scratch, "wb");
    assert_non_null(fp);
    static const char magic[] = "\x80\x02\x8a\x0alZ\xfc\x9c"; /* torch.save's old magic number, pickled */
    fwrite(magic, 1, sizeof magic - 1, fp);
    fclose(fp);
    refused(scratch, KILN_ERR_UNSUPPORTED, "legacy (pre-1.6) format");
    scratch_path("kiln_torch_text.pt");
    fp = fopen(scratch, "wb");
    fputs("not a torch file\n", fp);
    fclose(fp);
    refused(scratch, KILN_ERR_FORMAT, "no zip archive");
    size_t size;
    uint8_t *whole = kiln_test_read_file(kiln_test_data("embeddings/legacy.pt"), &size);
    scratch_path("kiln_torch_cut.pt");
    fp = fopen(scratch, "wb");
    fwrite(whole, 1, size / 2, fp);
    fclose(fp);
    free(whole);
    refused(scratch, KILN_ERR_FORMAT, "kiln_torch_cut.pt");
    refused("/nonexistent/kiln.pt", KILN_ERR_IO, "/nonexistent/kiln.pt");
}

/* Reads every tensor a value holds (where the pickle made some). */
static void read_all(const kiln_torch_file *f, const kiln_py_value *v, int depth)
{
    if (depth > 8) return;
    if (v->kind == KILN_PY_TENSOR) {
        float *x = NULL;
        if (kiln_torch_read_f32(f, v, &x) == KILN_OK) free(x);
        return;
    }
    if (v->kind == KILN_PY_DICT || v->kind == KILN_PY_LIST || v->kind == KILN_PY_TUPLE)
        for (size_t i = 0; i < v->n; i++) read_all(f, v->items[i], depth + 1);
}

/* legacy.pt's pickle with each byte changed three ways, and cut after each
 * byte: every one opens or is refused, never a crash or a leak (ASan). */
static void mutated_pickles(void **state)
{
    (void)state;
    int err;
    zip_t *z = zip_open(kiln_test_data("embeddings/legacy.pt"), ZIP_RDONLY, &err);
    assert_non_null(z);
    zip_int64_t index = -1;
    for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0) && index < 0; i++)
        if (strstr(zip_get_name(z, (zip_uint64_t)i, 0), "data.pkl")) index = i;
    assert_true(index >= 0);
    pickle original = {.n = 0};
    zip_file_t *zf = zip_fopen_index(z, (zip_uint64_t)index, 0);
    original.n = (size_t)zip_fread(zf, original.data, sizeof original.data);
    zip_fclose(zf);
    zip_discard(z);
    assert_true(original.n > 100 && original.n < sizeof original.data);
    float storage[64] = {0};
    int opened = 0, refused_count = 0;
    for (size_t i = 0; i < original.n; i++)
        for (int how = 0; how < 4; how++) {
            pickle p = original;
            if (how == 3) p.n = i;
            else p.data[i] = how == 0 ? 0x00 : how == 1 ? 0xff : (uint8_t)(p.data[i] ^ 0x5a);
            const char *path = write_archive("kiln_torch_mutated.pt", &p, storage, sizeof storage);
            kiln_torch_file *f;
            if (kiln_torch_open(path, &f) == KILN_OK) {
                read_all(f, kiln_torch_root(f), 0);
                kiln_torch_close(f);
                opened++;
            } else {
                refused_count++;
            }
            unlink(path);
        }
    print_message("  %zu bytes x 4 changes: %d opened, %d refused\n", original.n, opened, refused_count);
    assert_true(refused_count > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_torch_wrote),
        cmocka_unit_test(archives_built_here),
        cmocka_unit_test(nested_keys_flattened),
        cmocka_unit_test(bad_files_refused),
        cmocka_unit_test(mutated_pickles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
