/* Image files and ComfyUI's pixel rules: PNG/JPEG decoding against what
 * Pillow decodes (tests/data/image, see its README), PNG writing read back
 * with libpng, bad files, and the float <-> uint8 rules against ComfyUI's
 * own outputs. */
#include "kiln_test.h"

#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "golden.h"
#include "image.h"

static char tmp_dir[] = "/tmp/kiln_test_image_XXXXXX";

static int make_tmp_dir(void **state)
{
    (void)state;
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    DIR *d = opendir(tmp_dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        if (remove(path) != 0) rmdir(path);
    }
    closedir(d);
    return rmdir(tmp_dir);
}

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

/* The whole file, malloc'd; fails the test if it cannot be read. */
static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* A string literal's bytes without its terminating NUL. */
#define SPIT_LITERAL(path, literal) spit((path), (literal), sizeof(literal) - 1)

static void spit(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

/* Checks that `path` fails to load with `code` and a message naming it. */
static void assert_load_fails(const char *path, kiln_status code, const char *words)
{
    kiln_image img = {.width = -1};
    kiln_status st = kiln_image_load(path, &img);
    if (st != code)
        fail_msg("%s: expected %s, got %s (%s)", path, kiln_status_name(code), kiln_status_name(st), kiln_last_error());
    if (!strstr(kiln_last_error(), path)) fail_msg("message does not name the file: %s", kiln_last_error());
    if (words && !strstr(kiln_last_error(), words)) fail_msg("message lacks '%s': %s", words, kiln_last_error());
    assert_null(img.pixels);
    print_message("  %-60s %s\n", strrchr(path, '/') + 1, kiln_last_error());
}

/* An asymmetric test picture (h, w, 3). */
static void fill_pattern(kiln_image *img)
{
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            uint8_t *p = img->pixels + ((size_t)y * img->width + x) * 3;
            p[0] = (uint8_t)(31 * x + 7 * y), p[1] = (uint8_t)(255 - 13 * y + x), p[2] = (uint8_t)(x * y * 5);
        }
}

/* ---- decoding against Pillow ----------------------------------------------- */

typedef struct fixture {
    const char *name;
    int width, height;
    int tolerance; /* largest allowed |kiln - Pillow| per sample */
} fixture;

/* The fixtures were decoded by Pillow 13, whose wheel bundles libjpeg-turbo
 * 3.2; kiln links the system's libjpeg-turbo 2.1. Both use the same integer
 * IDCT and fancy upsampling, so JPEG pixels match exactly as well. With a
 * JPEG library of another IDCT, those rows would need a tolerance. */
static const fixture fixtures[] = {
    {"rgb.png", 7, 5, 0},
    {"rgba.png", 7, 5, 0},
    {"palette.png", 7, 5, 0},  /* 4-bit with a tRNS chunk */
    {"palette8.png", 7, 5, 0},
    {"gray.png", 7, 5, 0},
    {"gray1.png", 7, 5, 0},
    {"gray_alpha.png", 7, 5, 0},
    {"rgb16.png", 5, 4, 0},
    {"gray16.png", 5, 4, 0},   /* expected: the high byte, not Pillow (README.md) */
    {"interlaced.png", 11, 9, 0},
    {"exif2.png", 5, 3, 0},
    {"exif3.png", 5, 3, 0},
    {"exif4.png", 5, 3, 0},
    {"exif5.png", 3, 5, 0},
    {"exif6.png", 3, 5, 0},
    {"exif7.png", 3, 5, 0},
    {"exif8.png", 3, 5, 0},
    {"photo420.jpg", 19, 13, 0},
    {"progressive.jpg", 19, 13, 0},
    {"gray.jpg", 19, 13, 0},
    {"cmyk.jpg", 19, 13, 0},
    {"exif6.jpg", 13, 19, 0},
};

static void decodes_like_pillow(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        const fixture *fx = &fixtures[i];
        char path[512], expect_path[512];
        snprintf(path, sizeof path, "image/%s", fx->name);
        snprintf(expect_path, sizeof expect_path, "%s", kiln_test_data(path));
        strcat(expect_path, ".rgb");
        kiln_image img;
        assert_kiln_ok(kiln_image_load(kiln_test_data(path), &img));
        if (img.width != fx->width || img.height != fx->height || img.channels != 3)
            fail_msg("%s: got %dx%dx%d, expected %dx%dx3", fx->name, img.width, img.height, img.channels, fx->width,
                     fx->height);
        size_t n;
        uint8_t *expect = slurp(expect_path, &n);
        assert_int_equal(n, (size_t)fx->width * fx->height * 3);
        int worst = 0;
        for (size_t j = 0; j < n; j++) {
            int d = abs((int)img.pixels[j] - (int)expect[j]);
            if (d > worst) worst = d;
        }
        if (worst > fx->tolerance) fail_msg("%s: a sample differs by %d (> %d)", fx->name, worst, fx->tolerance);
        print_message("  %-16s %2dx%-2d max |kiln - Pillow| = %d\n", fx->name, img.width, img.height, worst);
        free(expect);
        kiln_image_free(&img);
    }
}

/* ---- PNG writing ----------------------------------------------------------- */

/* Reads every text chunk of a PNG with libpng itself (independent of kiln's
 * reader), calling `check` while libpng still owns the strings. */
static void with_png_text(const char *path, void (*check)(const png_text *chunks, int count))
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng could not read %s", path);
    png_init_io(png, f);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    assert_int_equal(png_get_bit_depth(png, info), 8);
    assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    png_textp chunks = NULL;
    int count = png_get_text(png, info, &chunks, NULL);
    check(chunks, count);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
}

static const char *const ascii_value = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler";
static const char *const utf8_value = "{\"text\": \"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xe2\x80\x94 \\u00e9\"}";

static void check_round_trip_text(const png_text *chunks, int count)
{
    assert_int_equal(count, 3);
    assert_string_equal(chunks[0].key, "parameters");
    assert_string_equal(chunks[0].text, ascii_value);
    assert_int_equal(chunks[0].compression, PNG_TEXT_COMPRESSION_NONE); /* tEXt */
    assert_string_equal(chunks[1].key, "prompt");
    assert_string_equal(chunks[1].text, utf8_value);
    assert_int_equal(chunks[1].compression, PNG_ITXT_COMPRESSION_NONE); /* iTXt: UTF-8 survives */
    assert_string_equal(chunks[2].key, "empty");
    assert_string_equal(chunks[2].text, "");
}

/* No `*.tmp-*` file may be left behind in the test folder. */
static void assert_no_temporaries(void)
{
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp-")) fail_msg("temporary file left behind: %s", e->d_name);
    closedir(d);
}

static void png_round_trip(void **state)
{
    (void)state;
    kiln_image img, back;
    assert_kiln_ok(kiln_image_alloc(&img, 13, 7));
    fill_pattern(&img);
    const kiln_png_text text[] = {{"parameters", ascii_value}, {"prompt", utf8_value}, {"empty", ""}};
    const char *path = tmp_path("round trip.png");
    assert_kiln_ok(kiln_image_save(path, &img, text, 3));
    assert_no_temporaries();
    assert_kiln_ok(kiln_image_load(path, &back));
    assert_int_equal(back.width, 13);
    assert_int_equal(back.height, 7);
    assert_memory_equal(back.pixels, img.pixels, 13 * 7 * 3);
    with_png_text(path, check_round_trip_text);

    /* Saving again replaces the file whole. */
    img.pixels[0] ^= 0xff;
    assert_kiln_ok(kiln_image_save(path, &img, NULL, 0));
    kiln_image_free(&back);
    assert_kiln_ok(kiln_image_load(path, &back));
    assert_memory_equal(back.pixels, img.pixels, 13 * 7 * 3);
    kiln_image_free(&back);
    kiln_image_free(&img);
}

/* The UserComment of a JPEG's EXIF block, walked by hand from the markers
 * (little-endian TIFF, as kiln writes it): its 8-byte character code into
 * code, its text (the rest) into *text; fails the test where there is none. */
static void jpeg_user_comment(const uint8_t *f, size_t n, char code[8], const uint8_t **text, size_t *len)
{
    assert_true(n > 4 && f[0] == 0xff && f[1] == 0xd8);
    for (size_t at = 2; at + 4 <= n && f[at] == 0xff && f[at + 1] != 0xda;) {
        size_t seg = (size_t)f[at + 2] << 8 | f[at + 3];
        const uint8_t *t = f + at + 4 + 6;
        if (f[at + 1] == 0xe1 && seg >= 8 && memcmp(f + at + 4, "Exif\0\0", 6) == 0) {
            assert_memory_equal(t, "II*\0", 4);
#define U16(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8)
#define U32(p) (U16(p) | U16((p) + 2) << 16)
            const uint8_t *ifd0 = t + U32(t + 4), *exif = NULL;
            for (uint32_t i = 0; i < U16(ifd0); i++)
                if (U16(ifd0 + 2 + 12 * i) == 0x8769) exif = t + U32(ifd0 + 2 + 12 * i + 8);
            assert_non_null(exif);
            for (uint32_t i = 0; i < U16(exif); i++) {
                const uint8_t *e = exif + 2 + 12 * i;
                if (U16(e) != 0x9286) continue;
                assert_int_equal(U16(e + 2), 7); /* UNDEFINED */
                assert_true(U32(e + 4) >= 8 && U32(e + 8) + U32(e + 4) <= seg - 2 - 6);
                memcpy(code, t + U32(e + 8), 8);
                *text = t + U32(e + 8) + 8;
                *len = U32(e + 4) - 8;
                return;
            }
#undef U16
#undef U32
        }
        at += 2 + seg;
    }
    fail_msg("no EXIF UserComment");
}

static void jpeg_round_trip(void **state)
{
    (void)state;
    kiln_image img, back;
    assert_kiln_ok(kiln_image_alloc(&img, 64, 48));
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++) {
            uint8_t *p = img.pixels + ((size_t)y * 64 + x) * 3;
            p[0] = (uint8_t)(4 * x), p[1] = (uint8_t)(5 * y), p[2] = (uint8_t)(96 + x + y);
        }
    /* "parameters" with a character outside the BMP: a surrogate pair in UTF-16 */
    const char *params = "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\x8c\xa7\nSteps: 20";
    const uint8_t want_utf16[] = {0, 'c', 0, 'a', 0, 'f', 0, 0xe9, 0, ' ', 0x26, 0x15, 0, ' ',
                                  0xd8, 0x3c, 0xdf, 0x27, 0, '\n', 0, 'S', 0, 't', 0, 'e', 0, 'p',
                                  0, 's', 0, ':', 0, ' ', 0, '2', 0, '0'};
    const kiln_png_text text[] = {{"parameters", params}, {"prompt", utf8_value}};
    const char *path = tmp_path("round trip.JPG");
    assert_kiln_ok(kiln_image_save(path, &img, text, 2));
    assert_no_temporaries();
    assert_kiln_ok(kiln_image_load(path, &back));
    assert_int_equal(back.width, 64);
    assert_int_equal(back.height, 48);
    long total = 0;
    int worst = 0;
    for (size_t i = 0; i < (size_t)64 * 48 * 3; i++) {
        int d = abs((int)back.pixels[i] - (int)img.pixels[i]);
        total += d;
        worst = d > worst ? d : worst;
    }
    assert_true(total <= (long)64 * 48 * 3); /* a mean error of at most 1 */
    assert_true(worst <= 8);
    kiln_image_free(&back);

    size_t n, len;
    uint8_t *file = slurp(path, &n);
    char code[8];
    const uint8_t *comment;
    jpeg_user_comment(file, n, code, &comment, &len);
    assert_memory_equal(code, "UNICODE\0", 8);
    assert_int_equal(len, sizeof want_utf16);
    assert_memory_equal(comment, want_utf16, sizeof want_utf16);
    free(file);

    /* plain ASCII stays ASCII */
    const kiln_png_text ascii[] = {{"parameters", ascii_value}};
    assert_kiln_ok(kiln_image_save(tmp_path("ascii.jpeg"), &img, ascii, 1));
    file = slurp(tmp_path("ascii.jpeg"), &n);
    jpeg_user_comment(file, n, code, &comment, &len);
    assert_memory_equal(code, "ASCII\0\0\0", 8);
    assert_int_equal(len, strlen(ascii_value));
    assert_memory_equal(comment, ascii_value, len);
    free(file);
    kiln_image_free(&img);
}

static void failed_save_leaves_no_file(void **state)
{
    (void)state;
    kiln_image img;
    assert_kiln_ok(kiln_image_alloc(&img, 4, 4));

    /* A folder that does not exist. */
    const char *missing = tmp_path("no such folder/out.png");
    assert_int_equal(kiln_image_save(missing, &img, NULL, 0), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), missing));

    /* A bad key fails before anything is written; the old file stays. */
    const char *path = tmp_path("keep.png");
    SPIT_LITERAL(path, "old");
    const kiln_png_text bad[] = {{"", "value"}};
    assert_int_equal(kiln_image_save(path, &img, bad, 1), KILN_ERR_INVALID_ARG);
    const kiln_png_text long_key[] = {
        {"a key that is far longer than the seventy-nine characters a PNG keyword may have", "v"}};
    assert_int_equal(kiln_image_save(path, &img, long_key, 1), KILN_ERR_INVALID_ARG);
    size_t n;
    uint8_t *old = slurp(path, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(old, "old", 3);
    free(old);

    /* The rename fails (a folder is in the way): the temporary file goes. */
    const char *blocked = tmp_path("blocked.png");
    assert_int_equal(mkdir(blocked, 0700), 0);
    assert_int_equal(kiln_image_save(blocked, &img, NULL, 0), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), blocked));
    assert_no_temporaries();

    kiln_image bad_img = {.width = 4, .height = 4, .channels = 4, .pixels = img.pixels};
    assert_int_equal(kiln_image_save(path, &bad_img, NULL, 0), KILN_ERR_INVALID_ARG);

    /* A name that asks for no format kiln writes: nothing is written. */
    const char *webp = tmp_path("out.webp");
    assert_int_equal(kiln_image_save(webp, &img, NULL, 0), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), webp));
    assert_int_equal(access(webp, F_OK), -1);
    assert_int_equal(kiln_image_save(tmp_path("no extension"), &img, NULL, 0), KILN_ERR_UNSUPPORTED);

    /* Parameters too long for a JPEG's EXIF block: an error, no file. */
    char *huge = malloc(70000);
    memset(huge, 'a', 69999);
    huge[69999] = '\0';
    const kiln_png_text too_long[] = {{"parameters", huge}};
    assert_int_equal(kiln_image_save(tmp_path("huge.jpg"), &img, too_long, 1), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "EXIF"));
    assert_int_equal(access(tmp_path("huge.jpg"), F_OK), -1);
    assert_no_temporaries();
    free(huge);
    kiln_image_free(&img);
}

/* ---- bad input --------------------------------------------------------------- */

/* A PNG of a given IHDR and no pixel data, with correct CRCs. */
static void write_png_header(const char *path, uint32_t width, uint32_t height)
{
    uint8_t file[8 + 25] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    uint8_t *ihdr = file + 16;
    for (int i = 0; i < 4; i++) {
        ihdr[i] = (uint8_t)(width >> (24 - 8 * i));
        ihdr[4 + i] = (uint8_t)(height >> (24 - 8 * i));
    }
    ihdr[8] = 8, ihdr[9] = 2; /* 8-bit RGB */
    uint32_t crc = (uint32_t)crc32(0, file + 12, 17);
    for (int i = 0; i < 4; i++) file[29 + i] = (uint8_t)(crc >> (24 - 8 * i));
    spit(path, file, sizeof file);
}

static void bad_files_are_named_errors(void **state)
{
    (void)state;
    assert_load_fails(tmp_path("missing.png"), KILN_ERR_IO, "No such file");
    assert_load_fails(tmp_dir, KILN_ERR_IO, "directory");
    spit(tmp_path("empty.png"), "", 0);
    assert_load_fails(tmp_path("empty.png"), KILN_ERR_FORMAT, "empty");
    SPIT_LITERAL(tmp_path("notes.png"), "just some text, not a picture\n");
    assert_load_fails(tmp_path("notes.png"), KILN_ERR_FORMAT, "not a PNG or JPEG");
    SPIT_LITERAL(tmp_path("anim.png"), "GIF89a\x01\x00\x01\x00\x00\x00\x00"); /* a GIF with a .png name */
    assert_load_fails(tmp_path("anim.png"), KILN_ERR_UNSUPPORTED, "GIF");
    SPIT_LITERAL(tmp_path("photo.webp"), "RIFF\x10\x00\x00\x00WEBPVP8 ");
    assert_load_fails(tmp_path("photo.webp"), KILN_ERR_UNSUPPORTED, "WebP");

    size_t n;
    uint8_t *png = slurp(kiln_test_data("image/interlaced.png"), &n);
    size_t png_cuts[] = {8, 20, 40, n / 2, n - 40, n - 12 /* no IEND */, n - 1};
    for (size_t i = 0; i < sizeof png_cuts / sizeof png_cuts[0]; i++) {
        spit(tmp_path("cut.png"), png, png_cuts[i]);
        assert_load_fails(tmp_path("cut.png"), KILN_ERR_FORMAT, "bad PNG");
    }
    png[n - 30] ^= 0x55; /* inside IDAT: the CRC no longer matches */
    spit(tmp_path("flipped.png"), png, n);
    assert_load_fails(tmp_path("flipped.png"), KILN_ERR_FORMAT, "bad PNG");
    free(png);

    uint8_t *jpg = slurp(kiln_test_data("image/photo420.jpg"), &n);
    size_t jpg_cuts[] = {3, 30, n / 3, n / 2, n - 40, n - 2 /* no EOI */};
    for (size_t i = 0; i < sizeof jpg_cuts / sizeof jpg_cuts[0]; i++) {
        spit(tmp_path("cut.jpg"), jpg, jpg_cuts[i]);
        assert_load_fails(tmp_path("cut.jpg"), KILN_ERR_FORMAT, "bad JPEG");
    }
    SPIT_LITERAL(tmp_path("garbage.jpg"), "\xff\xd8\xff\xe0 this is not a JPEG segment at all");
    assert_load_fails(tmp_path("garbage.jpg"), KILN_ERR_FORMAT, "bad JPEG");

    /* Claimed sizes beyond KILN_IMAGE_MAX_SIDE are refused before allocating. */
    write_png_header(tmp_path("huge.png"), 100000, 100000);
    assert_load_fails(tmp_path("huge.png"), KILN_ERR_UNSUPPORTED, "at most 16384");
    write_png_header(tmp_path("wide.png"), 16385, 1);
    assert_load_fails(tmp_path("wide.png"), KILN_ERR_UNSUPPORTED, "16385x1");
    for (size_t i = 2; i + 9 < n; i++) {
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) { /* SOF0: height and width at +5, +7 */
            jpg[i + 5] = 0x75, jpg[i + 6] = 0x30;   /* 30000 */
            break;
        }
    }
    spit(tmp_path("tall.jpg"), jpg, n);
    assert_load_fails(tmp_path("tall.jpg"), KILN_ERR_UNSUPPORTED, "30000");
    free(jpg);
}

/* Random damage to every fixture (a few bytes changed, maybe cut short):
 * each load either gives a whole image or fails with a message naming the
 * data, and leaves no image behind. Run under ASan this is a small fuzzer. */
static void damaged_files_fail_cleanly(void **state)
{
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15u;
    int decoded = 0, refused = 0;
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char path[512];
        snprintf(path, sizeof path, "image/%s", fixtures[f].name);
        size_t n;
        uint8_t *data = slurp(kiln_test_data(path), &n);
        uint8_t *damaged = malloc(n);
        assert_non_null(damaged);
        for (int round = 0; round < 100; round++) {
            memcpy(damaged, data, n);
            size_t size = n;
            for (int k = 0; k < 1 + round % 6; k++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
                damaged[3 + s % (n - 3)] = (uint8_t)(s >> 40); /* keep the magic bytes */
            }
            if (round % 4 == 0) size = 3 + s % (n - 3);
            kiln_image img = {.width = -1};
            if (kiln_image_decode(damaged, size, "damaged", &img) == KILN_OK) {
                assert_non_null(img.pixels);
                assert_true(img.width >= 1 && img.width <= KILN_IMAGE_MAX_SIDE);
                assert_true(img.height >= 1 && img.height <= KILN_IMAGE_MAX_SIDE);
                kiln_image_free(&img);
                decoded++;
            } else {
                if (!strstr(kiln_last_error(), "damaged")) fail_msg("unnamed error: %s", kiln_last_error());
                assert_null(img.pixels);
                refused++;
            }
        }
        free(damaged);
        free(data);
    }
    print_message("  %d damaged files decoded (damage in pixel data), %d refused\n", decoded, refused);
    assert_true(refused > decoded);
}

/* ---- ComfyUI's float <-> uint8 rules --------------------------------------- */

static float *read_f32(const char *name, size_t *count)
{
    size_t n;
    float *v = (float *)slurp(kiln_test_data(name), &n);
    *count = n / sizeof(float);
    return v;
}

static void save_rule_known_values(void **state)
{
    (void)state;
    struct { float x; uint8_t u8; } known[] = {
        {-1.0f, 0}, {1.0f, 255}, {0.0f, 127} /* 127.5 truncates */, {0.99999f, 254} /* 254.9987 */,
        {-0.99999f, 0} /* 0.0013 */, {2.0f, 255}, {-2.0f, 0}, {INFINITY, 255}, {-INFINITY, 0},
        {NAN, 0} /* numpy's cast of NaN on x86 */,
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint8_t got = kiln_image_u8_from_unit(kiln_image_unit_from_decoded(known[i].x));
        if (got != known[i].u8)
            fail_msg("x = %.9g: got %u, expected %u", (double)known[i].x, got, known[i].u8);
    }

    /* Near every uint8 boundary, against torch + numpy (make_fixtures.py). */
    size_t n, n8;
    float *x = read_f32("image/save_rule.f32", &n);
    uint8_t *expect = slurp(kiln_test_data("image/save_rule.u8"), &n8);
    assert_int_equal(n, n8);
    for (size_t i = 0; i < n; i++) {
        uint8_t got = kiln_image_u8_from_unit(kiln_image_unit_from_decoded(x[i]));
        if (got != expect[i]) fail_msg("x = %.9g: kiln %u, ComfyUI %u", (double)x[i], got, expect[i]);
    }
    print_message("  %zu decoder values map to ComfyUI's uint8 exactly\n", n);
    free(x);
    free(expect);
}

/* ComfyUI's run txt2img_euler_normal_s8: its VAEDecode IMAGE (NHWC, [0, 1])
 * and SaveImage uint8. */
static void save_rule_matches_comfyui_run(void **state)
{
    (void)state;
    enum { B = 2, H = 16, W = 16, C = 3 };
    size_t n, n8;
    float *unit = read_f32("image/comfy_image_float.f32", &n); /* (B, H, W, C) */
    uint8_t *expect = slurp(kiln_test_data("image/comfy_image_uint8.u8"), &n8);
    assert_int_equal(n, B * H * W * C);
    assert_int_equal(n8, n);
    for (size_t i = 0; i < n; i++)
        if (kiln_image_u8_from_unit(unit[i]) != expect[i]) fail_msg("sample %zu: %.9g", i, (double)unit[i]);

    /* The whole path from a decoder output (B, C, H, W): x = 2 * image - 1. */
    float *x = malloc(sizeof(float) * n);
    assert_non_null(x);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < H * W; i++)
                x[((size_t)b * C + c) * H * W + i] = 2.0f * unit[((size_t)b * H * W + i) * C + c] - 1.0f;
    for (int b = 0; b < B; b++) {
        kiln_image img;
        assert_kiln_ok(kiln_image_from_decoded(x + (size_t)b * C * H * W, H, W, &img));
        assert_int_equal(img.width, W);
        assert_memory_equal(img.pixels, expect + (size_t)b * H * W * C, H * W * C);
        kiln_image_free(&img);
    }
    free(x);
    free(unit);
    free(expect);
}

static void load_rule_matches_comfyui(void **state)
{
    (void)state;
    size_t n;
    float *expect = read_f32("image/load_rule.f32", &n); /* uint8 v -> encoder input, torch float32 */
    assert_int_equal(n, 256);
    kiln_image img;
    assert_kiln_ok(kiln_image_alloc(&img, 256, 1));
    for (int v = 0; v < 256; v++) {
        img.pixels[3 * v] = img.pixels[3 * v + 2] = (uint8_t)v;
        img.pixels[3 * v + 1] = (uint8_t)(255 - v);
    }
    float x[3 * 256]; /* (3, 1, 256) */
    kiln_image_to_encoder_input(&img, x);
    for (int v = 0; v < 256; v++) {
        if (memcmp(&x[v], &expect[v], 4) != 0) fail_msg("R %d: %.9g vs %.9g", v, (double)x[v], (double)expect[v]);
        if (memcmp(&x[256 + v], &expect[255 - v], 4) != 0) fail_msg("G %d", 255 - v);
        if (memcmp(&x[512 + v], &expect[v], 4) != 0) fail_msg("B %d", v);
    }
    assert_true(x[0] == -1.0f && x[255] == 1.0f);
    kiln_image_free(&img);
    free(expect);
}

/* ---- VAEEncode crop ----------------------------------------------------------- */

static void crop_keeps_the_centre(void **state)
{
    (void)state;
    /* (width, height, multiple) -> (width, height, x offset, y offset) by
     * ComfyUI's rule: side // m * m, offset (side % m) // 2. */
    struct { int w, h, m, cw, ch, x0, y0; } cases[] = {
        {23, 13, 8, 16, 8, 3, 2}, {21, 16, 8, 16, 16, 2, 0}, {17, 9, 2, 16, 8, 0, 0},
        {16, 16, 8, 16, 16, 0, 0}, {31, 15, 8, 24, 8, 3, 3}, {5, 7, 1, 5, 7, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_image img, out;
        assert_kiln_ok(kiln_image_alloc(&img, cases[i].w, cases[i].h));
        fill_pattern(&img);
        assert_kiln_ok(kiln_image_crop_to_multiple(&img, cases[i].m, &out));
        assert_int_equal(out.width, cases[i].cw);
        assert_int_equal(out.height, cases[i].ch);
        for (int y = 0; y < out.height; y++)
            assert_memory_equal(out.pixels + (size_t)y * out.width * 3,
                                img.pixels + ((size_t)(y + cases[i].y0) * img.width + cases[i].x0) * 3, out.width * 3);
        /* In place gives the same picture. */
        assert_kiln_ok(kiln_image_crop_to_multiple(&img, cases[i].m, &img));
        assert_int_equal(img.width, out.width);
        assert_memory_equal(img.pixels, out.pixels, (size_t)out.width * out.height * 3);
        kiln_image_free(&img);
        kiln_image_free(&out);
    }
    kiln_image img, out;
    assert_kiln_ok(kiln_image_alloc(&img, 7, 20));
    assert_int_equal(kiln_image_crop_to_multiple(&img, 8, &out), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_image_crop_to_multiple(&img, 0, &out), KILN_ERR_INVALID_ARG);
    kiln_image_free(&img);
}

/* Pillow's LANCZOS as ComfyUI's "lanczos" runs it (tests/data/kontext,
 * make_kontext_scale_data.py): a picture scaled down and one scaled up,
 * every byte; FluxKontextImageScale's size for a 37x23 picture and every
 * row of its 1328x800 picture (each row's byte sum and a weighted one). */
static void lanczos_as_pillow(void **state)
{
    (void)state;
    kiln_st_file *f = golden_open("kontext/golden.safetensors");
    static const struct { const char *picture, *name; int w, h; } cases[2] = {
        {"ip_adapter/picture_251x233.png", "lanczos.down", 37, 29}, {"controlnet/hint_37x23.png", "lanczos.up", 61, 45}};
    for (int i = 0; i < 2; i++) {
        kiln_image img, out;
        assert_kiln_ok(kiln_image_load(kiln_test_data(cases[i].picture), &img));
        assert_kiln_ok(kiln_image_resize_lanczos(&img, 0, 0, img.width, img.height, cases[i].w, cases[i].h, &out));
        golden want = golden_read(f, cases[i].name);
        assert_int_equal(want.count, (size_t)3 * cases[i].w * cases[i].h);
        int off = 0;
        for (size_t k = 0; k < want.count; k++) off += out.pixels[k] != (uint8_t)want.data[k];
        print_message("  %-12s %d of %zu bytes differ\n", cases[i].name, off, want.count);
        assert_int_equal(off, 0);
        golden_free(&want);
        kiln_image_free(&out);
        kiln_image_free(&img);
    }
    kiln_image hint, scaled;
    assert_kiln_ok(kiln_image_load(kiln_test_data("controlnet/hint_37x23.png"), &hint));
    assert_kiln_ok(kiln_flux_kontext_image_scale(&hint, &scaled));
    golden size = golden_read(f, "scale.size"), rows = golden_read(f, "scale.rows");
    assert_int_equal(scaled.width, (int)size.data[0]);
    assert_int_equal(scaled.height, (int)size.data[1]);
    for (int y = 0; y < scaled.height; y++) {
        double sum = 0, weighted = 0;
        for (int k = 0; k < 3 * scaled.width; k++) {
            const uint8_t v = scaled.pixels[(size_t)y * 3 * scaled.width + k];
            sum += v;
            weighted += (double)v * (k % 13 + 1);
        }
        if (sum != rows.data[2 * y] || weighted != rows.data[2 * y + 1]) fail_msg("row %d differs from Pillow's", y);
    }
    golden_free(&size);
    golden_free(&rows);
    kiln_image_free(&scaled);
    kiln_image_free(&hint);
    kiln_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_like_pillow),
        cmocka_unit_test(png_round_trip),
        cmocka_unit_test(jpeg_round_trip),
        cmocka_unit_test(failed_save_leaves_no_file),
        cmocka_unit_test(bad_files_are_named_errors),
        cmocka_unit_test(damaged_files_fail_cleanly),
        cmocka_unit_test(save_rule_known_values),
        cmocka_unit_test(save_rule_matches_comfyui_run),
        cmocka_unit_test(load_rule_matches_comfyui),
        cmocka_unit_test(crop_keeps_the_centre),
        cmocka_unit_test(lanczos_as_pillow),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
