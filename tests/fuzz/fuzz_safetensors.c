/* libFuzzer target for the safetensors reader (and the GGUF reader behind it:
 * an input beginning "GGUF" is read as one): any input must give KILN_OK or
 * an error, never a crash, a leak or a read outside the input. An accepted
 * input is read back through every view so that a bad offset shows up under
 * AddressSanitizer.
 *
 * An input starting with '{' is a header's JSON text, optionally followed by
 * a 0xff byte (never valid in the header's UTF-8) and the data area: the
 * harness prepends the 8-byte length, because mutations rarely keep a length
 * prefix consistent and would otherwise stop at the length check. Any other
 * input is a whole file.
 *
 * Build: cmake -DCMAKE_C_COMPILER=clang -DKILN_FUZZ=ON
 * Run:   bin/fuzz_safetensors -dict=tests/fuzz/safetensors.dict -max_total_time=300 CORPUS_DIR
 *        tests/data/safetensors_bad tests/data/safetensors tests/data/gguf */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink; /* keeps the reads of every view */

static void check_file(const uint8_t *bytes, size_t size)
{
    kiln_st_file *f;
    if (kiln_st_open_memory(bytes, size, "fuzz", &f) != KILN_OK) return;
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (kiln_st_find(f, t->name) != t) abort(); /* lookup disagrees with the list */
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sink ^= p[k];
        float *x;
        size_t n;
        if (kiln_st_read_f32(f, t->name, &x, &n) == KILN_OK) free(x);
    }
    (void)kiln_st_metadata(f, "format");
    kiln_st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || data[0] != '{') {
        check_file(data, size);
        return 0;
    }
    const uint8_t *split = memchr(data, 0xff, size);
    size_t header = split ? (size_t)(split - data) : size;
    size_t rest = split ? size - header - 1 : 0;
    uint8_t *file = malloc(8 + header + rest);
    if (!file) return 0;
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)header >> (8 * i));
    memcpy(file + 8, data, header);
    if (rest) memcpy(file + 8 + header, split + 1, rest);
    check_file(file, 8 + header + rest);
    free(file);
    return 0;
}
