/* safetensors: every malformed file gets its own error naming the file, the
 * writer's bytes equal the reference writer's, views are zero-copy, and a
 * golden from transformers reads back its known values. */
#include "kiln_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "status.h"

/* ---------------------------------------------------------------- helpers */

static char *make_temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = malloc(PATH_MAX);
    assert_non_null(dir);
    snprintf(dir, PATH_MAX, "%s/kiln-st-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) fail_msg("mkdtemp %s failed", dir);
    return dir;
}

/* Names of the entries in dir, newline-separated ("" when empty). */
static void list_dir(const char *dir, char *out, size_t size)
{
    out[0] = '\0';
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        strncat(out, e->d_name, size - strlen(out) - 1);
        strncat(out, "\n", size - strlen(out) - 1);
    }
    closedir(d);
}

static void remove_temp_dir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char path[PATH_MAX];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
    free(dir);
}

/* The error message must start with "<label>: ". */
static void assert_names_file(const char *label)
{
    const char *msg = kiln_last_error();
    size_t n = strlen(label);
    if (strncmp(msg, label, n) != 0 || strncmp(msg + n, ": ", 2) != 0)
        fail_msg("message does not start with '%s: ': %s", label, msg);
}

/* ---------------------------------------------------------------- the malformed corpus */

typedef struct bad_case {
    const char *file;   /* under tests/data/safetensors_bad */
    kiln_status code;
    const char *says;   /* a substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"empty", KILN_ERR_IO, "empty file (0 bytes)"},
    {"truncated_length", KILN_ERR_FORMAT, "truncated: 5 bytes"},
    {"header_past_end", KILN_ERR_FORMAT, "header length 4096 runs past the end of the file (163 bytes)"},
    {"huge_header_length", KILN_ERR_FORMAT, "header length 18446744073709551615 runs past the end"},
    {"zero_header_length", KILN_ERR_FORMAT, "header is empty"},
    {"truncated_data", KILN_ERR_FORMAT, "tensor 'b': data_offsets [8,16] run past the data area (12 bytes)"},
    {"not_json", KILN_ERR_FORMAT, "header is not valid JSON"},
    {"truncated_json", KILN_ERR_FORMAT, "header is not valid JSON"},
    {"json_array", KILN_ERR_FORMAT, "header is not a JSON object"},
    {"json_string", KILN_ERR_FORMAT, "header is not a JSON object"},
    {"trailing_bytes", KILN_ERR_FORMAT, "header has bytes after its JSON value"},
    {"invalid_utf8", KILN_ERR_FORMAT, "header byte 3 is not valid UTF-8"},
    {"nul_in_header", KILN_ERR_FORMAT, "is a NUL"},
    {"deep_nesting", KILN_ERR_FORMAT, "header is not valid JSON"},
    {"entry_not_object", KILN_ERR_FORMAT, "tensor 'a': entry is not a JSON object"},
    {"missing_dtype", KILN_ERR_FORMAT, "tensor 'a': \"dtype\" is missing or not a string"},
    {"dtype_not_string", KILN_ERR_FORMAT, "tensor 'a': \"dtype\" is missing or not a string"},
    {"unknown_dtype", KILN_ERR_FORMAT, "tensor 'a': unknown dtype \"F17\""},
    {"unsupported_dtype", KILN_ERR_UNSUPPORTED, "tensor 'a': dtype F64 is not supported"},
    {"missing_shape", KILN_ERR_FORMAT, "tensor 'a': \"shape\" is missing or not an array"},
    {"shape_not_array", KILN_ERR_FORMAT, "tensor 'a': \"shape\" is missing or not an array"},
    {"negative_dim", KILN_ERR_FORMAT, "tensor 'a': shape[0] is not an integer in [0, 2^53)"},
    {"fractional_dim", KILN_ERR_FORMAT, "tensor 'a': shape[0] is not an integer in [0, 2^53)"},
    {"five_dims", KILN_ERR_UNSUPPORTED, "tensor 'a': 5 dims, kiln handles at most 4"},
    {"shape_overflow", KILN_ERR_FORMAT, "tensor 'a': shape overflows 64 bits"},
    {"bytes_overflow", KILN_ERR_FORMAT, "tensor 'a': shape x I64 overflows 64 bits"},
    {"size_mismatch", KILN_ERR_FORMAT, "tensor 'a': shape [3,4] x F16 is 24 bytes but data_offsets span 20"},
    {"missing_offsets", KILN_ERR_FORMAT, "tensor 'a': \"data_offsets\" is not [begin, end]"},
    {"offsets_three_values", KILN_ERR_FORMAT, "tensor 'a': \"data_offsets\" is not [begin, end]"},
    {"offsets_negative", KILN_ERR_FORMAT, "tensor 'a': \"data_offsets\" is not [begin, end]"},
    {"offsets_too_large", KILN_ERR_FORMAT, "tensor 'a': \"data_offsets\" is not [begin, end]"},
    {"offsets_reversed", KILN_ERR_FORMAT, "tensor 'a': data_offsets [8,0] end before they begin"},
    {"offsets_past_data", KILN_ERR_FORMAT, "tensor 'a': data_offsets [16,24] run past the data area (16 bytes)"},
    {"overlapping_offsets", KILN_ERR_FORMAT, "tensors 'a' [4,12] and 'b' [8,16] overlap"},
    {"duplicate_tensor", KILN_ERR_FORMAT, "tensor 'a' appears twice in the header"},
    {"metadata_not_object", KILN_ERR_FORMAT, "__metadata__ is not a JSON object"},
    {"metadata_value_not_string", KILN_ERR_FORMAT, "__metadata__ value of 'epoch' is not a string"},
    {"duplicate_metadata", KILN_ERR_FORMAT, "__metadata__ appears twice"},
};
#define N_BAD_CASES (sizeof bad_cases / sizeof bad_cases[0])

static void corpus_files_get_their_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_BAD_CASES; i++) {
        const bad_case *c = &bad_cases[i];
        char rel[256];
        snprintf(rel, sizeof rel, "safetensors_bad/%s.safetensors", c->file);
        const char *path = kiln_test_data(rel);
        kiln_st_file *f = (kiln_st_file *)1;
        kiln_clear_error();
        kiln_status st = kiln_st_open(path, &f);
        if (st != c->code)
            fail_msg("%s: got %s (%s), expected %s", c->file, kiln_status_name(st), kiln_last_error(),
                     kiln_status_name(c->code));
        assert_null(f);
        assert_names_file(path);
        if (!strstr(kiln_last_error(), c->says))
            fail_msg("%s: message lacks \"%s\": %s", c->file, c->says, kiln_last_error());
    }
}

/* Every file under safetensors_bad (including any a fuzzer found) is rejected
 * from memory too, and has an entry in the table above. */
static void corpus_replays_from_memory(void **state)
{
    (void)state;
    const char *dir = kiln_test_data("safetensors_bad");
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t seen = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *dot = strrchr(e->d_name, '.');
        if (!dot || strcmp(dot, ".safetensors") != 0) continue;
        bool listed = false;
        for (size_t i = 0; i < N_BAD_CASES; i++)
            listed |= strlen(bad_cases[i].file) == (size_t)(dot - e->d_name) &&
                      strncmp(bad_cases[i].file, e->d_name, (size_t)(dot - e->d_name)) == 0;
        if (!listed) fail_msg("%s is not in bad_cases: give it an expected error", e->d_name);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t size;
        uint8_t *bytes = kiln_test_read_file(path, &size);
        kiln_st_file *f = NULL;
        kiln_status st = kiln_st_open_memory(bytes, size, e->d_name, &f);
        if (st == KILN_OK) fail_msg("%s was accepted from memory", e->d_name);
        assert_null(f);
        assert_names_file(e->d_name);
        free(bytes);
        seen++;
    }
    closedir(d);
    assert_int_equal(seen, N_BAD_CASES);
}

static void directory_and_missing_file_are_io_errors(void **state)
{
    (void)state;
    kiln_st_file *f;
    const char *dir = kiln_test_data("safetensors_bad");
    assert_int_equal(kiln_st_open(dir, &f), KILN_ERR_IO);
    assert_names_file(dir);
    assert_non_null(strstr(kiln_last_error(), "is a directory"));
    const char *missing = kiln_test_data("safetensors_bad/no_such_file.safetensors");
    assert_int_equal(kiln_st_open(missing, &f), KILN_ERR_IO);
    assert_names_file(missing);
    assert_non_null(strstr(kiln_last_error(), "No such file"));
}

/* A header length over the 100 MB cap that the file does hold (sparse, so it
 * costs no disk). */
static void header_over_the_cap_is_rejected(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/big_header.safetensors", dir);
    uint64_t n = 100000008;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(n >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, len, 8), 8);
    assert_int_equal(ftruncate(fd, (off_t)(8 + n)), 0);
    close(fd);
    kiln_st_file *f;
    assert_int_equal(kiln_st_open(path, &f), KILN_ERR_FORMAT);
    assert_names_file(path);
    assert_non_null(strstr(kiln_last_error(), "header length 100000008 exceeds the limit of 100000000 bytes"));
    remove_temp_dir(dir);
}

/* ---------------------------------------------------------------- the upstream file */

/* The tensors of tests/data/safetensors/make_upstream.py, in its order. */
static const float upstream_f32[6] = {0.5f, -1.25f, 3.0f, 1024.0f, 65504.0f, -0.0f};
static const float upstream_s = 42.0f;
static const uint16_t upstream_bf16[4] = {0x3f80, 0xc000, 0x0000, 0x7f80};
static const uint16_t upstream_f16[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
static const uint8_t upstream_f8e4m3[5] = {0x38, 0xb8, 0x01, 0x7e, 0x00};
static const uint8_t upstream_f8e5m2[3] = {0x3c, 0xc0, 0x7b};
static const int32_t upstream_i32[2] = {-7, 123456};
static const int64_t upstream_i64[3] = {-5, 0, 1ll << 40};
static const uint8_t upstream_u8[7] = {0, 1, 2, 3, 200, 254, 255};
static const uint8_t upstream_umlaut[1] = {9};
static const uint16_t upstream_quote[1] = {0x3800};

static const kiln_st_entry upstream_entries[] = {
    {"a.f32", KILN_F32, 2, {2, 3}, upstream_f32},
    {"s", KILN_F32, 0, {0}, &upstream_s},
    {"b.bf16", KILN_BF16, 1, {4}, upstream_bf16},
    {"c.f16", KILN_F16, 4, {1, 2, 2, 1}, upstream_f16},
    {"d.f8e4m3", KILN_F8_E4M3, 1, {5}, upstream_f8e4m3},
    {"e.f8e5m2", KILN_F8_E5M2, 1, {3}, upstream_f8e5m2},
    {"f.i32", KILN_I32, 1, {2}, upstream_i32},
    {"g.i64", KILN_I64, 1, {3}, upstream_i64},
    {"h.u8", KILN_U8, 1, {7}, upstream_u8},
    {"empty", KILN_F32, 2, {0, 3}, NULL},
    {"\xc3\xbcn\xc3\xaf", KILN_U8, 1, {1}, upstream_umlaut},
    {"q\"\\\n", KILN_F16, 1, {1}, upstream_quote},
};
#define N_UPSTREAM (sizeof upstream_entries / sizeof upstream_entries[0])
static const kiln_st_meta upstream_meta[] = {
    {"format", "pt"},
    {"note", "line1\nline2 \"quoted\" \\ \xc3\xa9 \x01"},
};

static void writer_matches_the_reference_writer(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, upstream_entries, N_UPSTREAM, upstream_meta, 2));
    size_t got_size, want_size;
    uint8_t *got = kiln_test_read_file(path, &got_size);
    uint8_t *want = kiln_test_read_file(kiln_test_data("safetensors/upstream.safetensors"), &want_size);
    assert_int_equal(got_size, want_size);
    assert_memory_equal(got, want, want_size);
    char names[1024];
    list_dir(dir, names, sizeof names); /* the temporary file is gone */
    assert_string_equal(names, "out.safetensors\n");
    free(got);
    free(want);
    remove_temp_dir(dir);
}

/* True when [p, p + n) lies in a mapping of `path` in /proc/self/maps. */
static bool in_file_mapping(const void *p, size_t n, const char *path)
{
    char real[PATH_MAX], line[PATH_MAX + 256];
    if (!realpath(path, real)) return false;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name_at) < 2 || !name_at) continue;
        line[strcspn(line, "\n")] = '\0';
        found = strcmp(line + name_at, real) == 0 && (uintptr_t)p >= lo && (uintptr_t)p + n <= hi;
    }
    fclose(maps);
    return found;
}

static void reads_the_reference_writers_file(void **state)
{
    (void)state;
    const char *path = kiln_test_data("safetensors/upstream.safetensors");
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(path, &f));
    assert_string_equal(kiln_st_path(f), path);
    assert_int_equal(kiln_st_count(f), N_UPSTREAM);
    /* data order = the reference writer's layout: wider dtypes first, then by name */
    static const char *const layout[] = {"g.i64", "a.f32", "empty", "s", "f.i32", "b.bf16", "c.f16", "q\"\\\n",
                                         "d.f8e4m3", "e.f8e5m2", "h.u8", "\xc3\xbcn\xc3\xaf"};
    for (size_t i = 0; i < N_UPSTREAM; i++) assert_string_equal(kiln_st_at(f, i)->name, layout[i]);
    assert_null(kiln_st_at(f, N_UPSTREAM));

    for (size_t i = 0; i < N_UPSTREAM; i++) {
        const kiln_st_entry *e = &upstream_entries[i];
        const kiln_st_tensor *t = kiln_st_find(f, e->name);
        assert_non_null(t);
        assert_string_equal(t->name, e->name);
        assert_int_equal(t->dtype, e->dtype);
        assert_int_equal(t->ndim, e->ndim);
        size_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            assert_int_equal(t->shape[d], e->shape[d]);
            numel *= (size_t)e->shape[d];
        }
        assert_int_equal(t->nbytes, numel * kiln_dtype_size(e->dtype));
        if (t->nbytes) assert_memory_equal(t->data, e->data, t->nbytes);
        /* a zero-copy view into this file's mapping, aligned to its element size */
        if (!in_file_mapping(t->data, t->nbytes, path)) fail_msg("%s is not a view of the mapped file", e->name);
        assert_int_equal((uintptr_t)t->data % kiln_dtype_size(t->dtype), 0);
    }
    assert_null(kiln_st_find(f, "a.f3"));
    assert_null(kiln_st_find(f, ""));
    assert_string_equal(kiln_st_metadata(f, "format"), "pt");
    assert_string_equal(kiln_st_metadata(f, "note"), upstream_meta[1].value);
    assert_null(kiln_st_metadata(f, "absent"));

    /* widening, against values written down independently (make_upstream.py's comments) */
    static const struct { const char *name; size_t n; float v[8]; } widened[] = {
        {"b.bf16", 4, {1.0f, -2.0f, 0.0f, INFINITY}},
        {"c.f16", 4, {1.0f, -2.0f, 0x1p-24f, 65504.0f}},
        {"d.f8e4m3", 5, {1.0f, -1.0f, 0x1p-9f, 448.0f, 0.0f}},
        {"e.f8e5m2", 3, {1.0f, -2.0f, 57344.0f}},
        {"f.i32", 2, {-7.0f, 123456.0f}},
        {"g.i64", 3, {-5.0f, 0.0f, 1099511627776.0f}},
        {"h.u8", 7, {0, 1, 2, 3, 200, 254, 255}},
        {"s", 1, {42.0f}},
    };
    for (size_t i = 0; i < sizeof widened / sizeof widened[0]; i++) {
        float *x;
        size_t n;
        assert_kiln_ok(kiln_st_read_f32(f, widened[i].name, &x, &n));
        assert_int_equal(n, widened[i].n);
        for (size_t k = 0; k < n; k++)
            if (x[k] != widened[i].v[k]) fail_msg("%s[%zu] = %g, expected %g", widened[i].name, k, x[k], widened[i].v[k]);
        free(x);
    }
    float *x;
    size_t n;
    assert_kiln_ok(kiln_st_read_f32(f, "empty", &x, &n));
    assert_int_equal(n, 0);
    free(x);
    assert_int_equal(kiln_st_read_f32(f, "absent", &x, &n), KILN_ERR_MODEL);
    assert_names_file(path);
    assert_non_null(strstr(kiln_last_error(), "no tensor 'absent'"));
    kiln_st_close(f);
}

static void open_memory_views_the_callers_bytes(void **state)
{
    (void)state;
    size_t size;
    uint8_t *bytes = kiln_test_read_file(kiln_test_data("safetensors/upstream.safetensors"), &size);
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open_memory(bytes, size, "upstream", &f));
    assert_string_equal(kiln_st_path(f), "upstream");
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        assert_true((const uint8_t *)t->data >= bytes && (const uint8_t *)t->data + t->nbytes <= bytes + size);
    }
    kiln_st_close(f);
    free(bytes);
}

/* A header whose length is not a multiple of 8 (allowed) leaves F32 data
 * misaligned; read_f32 must still read it. */
static void misaligned_data_reads_correctly(void **state)
{
    (void)state;
    const char header[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    size_t hn = sizeof header - 1;
    _Alignas(8) uint8_t file[8 + sizeof header + 12];
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)(hn >> (8 * i));
    memcpy(file + 8, header, hn);
    const float values[3] = {1.5f, -2.25f, 1e-20f};
    memcpy(file + 8 + hn, values, sizeof values);
    assert_int_not_equal((8 + hn) % 4, 0);
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open_memory(file, 8 + hn + 12, "misaligned", &f));
    float *x;
    size_t n;
    assert_kiln_ok(kiln_st_read_f32(f, "x", &x, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(x, values, sizeof values);
    free(x);
    kiln_st_close(f);
}

/* ---------------------------------------------------------------- writing */

static void many_tensors_are_found_by_name(void **state)
{
    (void)state;
    enum { N = 5000 };
    static kiln_st_entry entries[N];
    static char names[N][16];
    static uint8_t values[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "t.%d", i);
        values[i] = (uint8_t)(i * 7);
        entries[i] = (kiln_st_entry){names[i], KILN_U8, 1, {1}, &values[i]};
    }
    char *dir = make_temp_dir();
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/many.safetensors", dir);
    assert_kiln_ok(kiln_st_write(path, entries, N, NULL, 0));
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(path, &f));
    assert_int_equal(kiln_st_count(f), N);
    assert_null(kiln_st_metadata(f, "format"));
    for (int i = 0; i < N; i++) {
        const kiln_st_tensor *t = kiln_st_find(f, names[i]);
        assert_non_null(t);
        assert_string_equal(t->name, names[i]);
        assert_int_equal(*(const uint8_t *)t->data, values[i]);
    }
    assert_null(kiln_st_find(f, "t.5000"));
    assert_null(kiln_st_find(f, "t."));
    kiln_st_close(f);
    remove_temp_dir(dir);
}

static kiln_status fail_on_second(void *ctx, size_t index, void *dst, size_t nbytes)
{
    int *calls = ctx;
    (void)index;
    if (++*calls == 2) return kiln_fail(KILN_ERR_IO, "source went away");
    memset(dst, 0x5a, nbytes);
    return KILN_OK;
}

static void failed_writes_leave_no_file(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char path[PATH_MAX], names[1024];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);

    /* the second tensor in file order fails: that is "a.f32" */
    int calls = 0;
    assert_int_equal(kiln_st_write_fill(path, upstream_entries, N_UPSTREAM, NULL, 0, fail_on_second, &calls),
                     KILN_ERR_IO);
    assert_names_file(path);
    assert_non_null(strstr(kiln_last_error(), "tensor 'a.f32': source went away"));
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "");

    const kiln_st_entry twice[] = {{"w", KILN_F32, 1, {1}, upstream_f32}, {"w", KILN_F16, 1, {1}, upstream_f16}};
    assert_int_equal(kiln_st_write(path, twice, 2, NULL, 0), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "tensor 'w' is given twice"));

    const kiln_st_entry no_data[] = {{"w", KILN_F32, 1, {2}, NULL}};
    assert_int_equal(kiln_st_write(path, no_data, 1, NULL, 0), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "tensor 'w': data is NULL"));

    const kiln_st_entry negative[] = {{"w", KILN_F32, 2, {2, -1}, upstream_f32}};
    assert_int_equal(kiln_st_write(path, negative, 1, NULL, 0), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "shape[1] = -1 is negative"));

    const kiln_st_entry reserved[] = {{"__metadata__", KILN_F32, 1, {1}, upstream_f32}};
    assert_int_equal(kiln_st_write(path, reserved, 1, NULL, 0), KILN_ERR_INVALID_ARG);
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "");

    char missing_dir[PATH_MAX];
    snprintf(missing_dir, sizeof missing_dir, "%s/no/such/dir/out.safetensors", dir);
    assert_int_equal(kiln_st_write(missing_dir, upstream_entries, N_UPSTREAM, NULL, 0), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "cannot create"));

    /* a file already at the path is replaced whole */
    assert_kiln_ok(kiln_st_write(path, no_data, 0, NULL, 0));
    assert_kiln_ok(kiln_st_write(path, upstream_entries, N_UPSTREAM, upstream_meta, 2));
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(path, &f));
    assert_int_equal(kiln_st_count(f), N_UPSTREAM);
    kiln_st_close(f);
    list_dir(dir, names, sizeof names);
    assert_string_equal(names, "out.safetensors\n");
    remove_temp_dir(dir);
}

/* ---------------------------------------------------------------- a transformers golden */

/* diffusers/clip_text.safetensors: CLIP outputs computed by transformers; the
 * expected values were read from the original with numpy (see its README). */
static void reads_known_values_of_a_golden(void **state)
{
    (void)state;
    const char *path = kiln_test_data("diffusers/clip_text.safetensors");
    kiln_st_file *f;
    assert_kiln_ok(kiln_st_open(path, &f));
    assert_int_equal(kiln_st_count(f), 7);
    const kiln_st_tensor *lh = kiln_st_find(f, "last_hidden_state");
    assert_non_null(lh);
    assert_int_equal(lh->dtype, KILN_F32);
    assert_int_equal(lh->ndim, 3);
    assert_int_equal(lh->shape[0], 2);
    assert_int_equal(lh->shape[1], 77);
    assert_int_equal(lh->shape[2], 32);

    float *x;
    size_t n;
    assert_kiln_ok(kiln_st_read_f32(f, "input_ids", &x, &n)); /* I64 token ids */
    assert_int_equal(n, 2 * 77);
    static const float ids0[10] = {49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407};
    static const float ids1[4] = {49406, 49407, 49407, 49407};
    assert_memory_equal(x, ids0, sizeof ids0);
    assert_memory_equal(x + 77, ids1, sizeof ids1);
    double id_sum = 0;
    for (size_t i = 0; i < n; i++) id_sum += x[i];
    assert_true(id_sum == 7253701.0);
    free(x);

    assert_kiln_ok(kiln_st_read_f32(f, "last_hidden_state", &x, &n));
    assert_int_equal(n, 2 * 77 * 32);
    static const float first[4] = {-0.920713186f, 1.56695068f, -2.20012593f, -0.27988252f};
    static const float last[4] = {-1.70377803f, -1.85467494f, 0.933891118f, 1.23841441f}; /* [1, 76, 28:32] */
    assert_memory_equal(x, first, sizeof first);
    assert_memory_equal(x + (1 * 77 + 76) * 32 + 28, last, sizeof last);
    double sumsq = 0;
    for (size_t i = 0; i < n; i++) sumsq += (double)x[i] * x[i];
    assert_true(fabs(sumsq - 4927.8702016818979) < 1e-9 * 4927.87);
    free(x);

    assert_kiln_ok(kiln_st_read_f32(f, "pooler_output", &x, &n));
    static const float pooled1[4] = {-0.0792889297f, 0.445676714f, -1.1894865f, 0.624312341f};
    assert_memory_equal(x + 32, pooled1, sizeof pooled1);
    free(x);
    kiln_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(corpus_files_get_their_errors),
        cmocka_unit_test(corpus_replays_from_memory),
        cmocka_unit_test(directory_and_missing_file_are_io_errors),
        cmocka_unit_test(header_over_the_cap_is_rejected),
        cmocka_unit_test(writer_matches_the_reference_writer),
        cmocka_unit_test(reads_the_reference_writers_file),
        cmocka_unit_test(open_memory_views_the_callers_bytes),
        cmocka_unit_test(misaligned_data_reads_correctly),
        cmocka_unit_test(many_tensors_are_found_by_name),
        cmocka_unit_test(failed_writes_leave_no_file),
        cmocka_unit_test(reads_known_values_of_a_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
