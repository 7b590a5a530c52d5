#include "image.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <utf8proc.h>

#include "resample.h"
#include "file.h"
#include "status.h"

/* A file this large cannot hold a picture kiln accepts (the largest, raw,
 * is 768 MiB); refusing it early keeps a stray path from filling memory. */
#define MAX_FILE_BYTES ((size_t)1 << 30)

kiln_status kiln_image_alloc(kiln_image *img, int width, int height)
{
    *img = (kiln_image){0};
    if (width < 1 || height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "image size %dx%d: both sides must be at least 1", width, height);
    if (width > KILN_IMAGE_MAX_SIDE || height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "image size %dx%d: a side over %d pixels", width, height,
                         KILN_IMAGE_MAX_SIDE);
    uint8_t *pixels = calloc((size_t)width * (size_t)height, 3);
    if (!pixels) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "image %dx%d: out of memory", width, height);
    *img = (kiln_image){.width = width, .height = height, .channels = 3, .pixels = pixels};
    return KILN_OK;
}

void kiln_image_free(kiln_image *img)
{
    if (!img) return;
    free(img->pixels);
    *img = (kiln_image){0};
}

static kiln_status check_side(uint32_t width, uint32_t height, const char *label)
{
    if (width == 0 || height == 0) return kiln_fail(KILN_ERR_FORMAT, "%s: image has size %ux%u", label, width, height);
    if (width > KILN_IMAGE_MAX_SIDE || height > KILN_IMAGE_MAX_SIDE)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: image is %ux%u pixels; kiln accepts at most %d per side", label,
                         width, height, KILN_IMAGE_MAX_SIDE);
    return KILN_OK;
}

/* ---- EXIF orientation ---------------------------------------------------- */

static uint32_t read_u16(const uint8_t *p, bool le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t read_u32(const uint8_t *p, bool le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The Orientation tag (0x0112) of IFD0 in an EXIF block laid out as a TIFF
 * file: 1..8, or 1 (as stored) when absent or unreadable. An "Exif\0\0"
 * prefix, as JPEG APP1 carries it, is skipped. */
static int exif_orientation(const uint8_t *tiff, size_t n)
{
    if (n >= 6 && memcmp(tiff, "Exif\0\0", 6) == 0) tiff += 6, n -= 6;
    if (n < 8) return 1;
    bool le;
    if (tiff[0] == 'I' && tiff[1] == 'I') le = true;
    else if (tiff[0] == 'M' && tiff[1] == 'M') le = false;
    else return 1;
    if (read_u16(tiff + 2, le) != 42) return 1;
    uint32_t ifd = read_u32(tiff + 4, le);
    if (ifd > n - 2) return 1;
    uint32_t count = read_u16(tiff + ifd, le);
    for (uint32_t i = 0; i < count; i++) {
        size_t entry = ifd + 2 + (size_t)12 * i;
        if (entry + 12 > n) break;
        if (read_u16(tiff + entry, le) != 0x0112) continue;
        uint32_t type = read_u16(tiff + entry + 2, le);
        uint32_t value = type == 3 ? read_u16(tiff + entry + 8, le) : type == 4 ? read_u32(tiff + entry + 8, le) : 1;
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}

/* Turns the stored pixels into the upright picture, as exif_transpose does:
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. */
static kiln_status apply_orientation(kiln_image *img, int orientation)
{
    if (orientation == 1) return KILN_OK;
    int w = img->width, h = img->height;
    bool swap = orientation >= 5;
    kiln_image out;
    TRY(kiln_image_alloc(&out, swap ? h : w, swap ? w : h));
    for (int y = 0; y < out.height; y++) {
        for (int x = 0; x < out.width; x++) {
            int sx, sy; /* the stored pixel that lands at (x, y) */
            switch (orientation) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            default: sx = w - 1 - y, sy = x; break; /* 8 */
            }
            memcpy(out.pixels + ((size_t)y * out.width + x) * 3, img->pixels + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    kiln_image_free(img);
    *img = out;
    return KILN_OK;
}

/* ---- PNG ----------------------------------------------------------------- */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* libpng reports errors by longjmp. Everything that must survive the jump
 * lives on the heap, where setjmp's rules about locals do not reach. */
typedef struct png_job {
    jmp_buf jump;
    char message[256];
    const uint8_t *data;
    size_t size, pos;
    png_structp png;
    png_infop info;
    png_bytep *rows; /* (height) pointers into img.pixels */
    kiln_image img;
    int orientation;
    const char *text_key; /* a text chunk to keep, NULL: none */
    char *text;           /* its value, once read */
    bool keep_alpha;      /* read the alpha (or a tRNS chunk's transparency) into `alpha` */
    bool has_alpha, color_key; /* color_key: the alpha is a grey or RGB picture's tRNS colour */
    kiln_image alpha;     /* its bytes in all three channels, so that it turns as the picture does */
    uint8_t *rgba;        /* the rows as read, before they are split */
} png_job;

static void png_on_error(png_structp png, png_const_charp message)
{
    png_job *job = png_get_error_ptr(png);
    snprintf(job->message, sizeof job->message, "%s", message);
    longjmp(job->jump, 1);
}

/* A library prints nothing; libpng's warnings (odd ancillary chunks, sRGB
 * profile quirks) do not change the pixels. */
static void png_on_warning(png_structp png, png_const_charp message) { (void)png, (void)message; }

static void png_read_bytes(png_structp png, png_bytep out, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (n > job->size - job->pos) png_error(png, "the file ends early (truncated)");
    memcpy(out, job->data + job->pos, n);
    job->pos += n;
}

static kiln_status png_read_pixels(png_job *job, const char *label)
{
    png_structp png = job->png;
    png_infop info = job->info;
    png_set_read_fn(png, job, png_read_bytes);
    png_read_info(png, info);
    TRY(check_side(png_get_image_width(png, info), png_get_image_height(png, info), label));

    int bit_depth = png_get_bit_depth(png, info);
    int color_type = png_get_color_type(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);
    /* Pillow's convert("RGB") drops alpha, and a palette's tRNS with it;
       its convert("RGBA") makes alpha of a tRNS chunk */
    const bool trns = png_get_valid(png, info, PNG_INFO_tRNS);
    job->has_alpha = job->keep_alpha && ((color_type & PNG_COLOR_MASK_ALPHA) || trns);
    job->color_key = job->has_alpha && !(color_type & PNG_COLOR_MASK_ALPHA) && color_type != PNG_COLOR_TYPE_PALETTE;
    if (job->has_alpha && trns) png_set_tRNS_to_alpha(png);
    else if (!job->has_alpha && ((color_type & PNG_COLOR_MASK_ALPHA) || trns)) png_set_strip_alpha(png);
    if (!(color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int width = (int)png_get_image_width(png, info), height = (int)png_get_image_height(png, info);
    const int channels = job->has_alpha ? 4 : 3;
    if (png_get_channels(png, info) != channels || png_get_rowbytes(png, info) != (size_t)width * channels)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: PNG colour type %d, bit depth %d did not convert to 8-bit RGB%s",
                         label, color_type, bit_depth, job->has_alpha ? "A" : "");
    TRY(kiln_image_alloc(&job->img, width, height));
    if (job->has_alpha) {
        TRY(kiln_image_alloc(&job->alpha, width, height));
        if (!(job->rgba = malloc((size_t)width * height * 4)))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    job->rows = malloc(sizeof *job->rows * (size_t)height);
    if (!job->rows) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    uint8_t *rows = job->has_alpha ? job->rgba : job->img.pixels;
    for (int y = 0; y < height; y++) job->rows[y] = rows + (size_t)y * width * channels;
    png_read_image(png, job->rows);
    png_read_end(png, info); /* an eXIf chunk may follow the pixels */
    for (size_t i = 0; job->has_alpha && i < (size_t)width * height; i++) {
        memcpy(job->img.pixels + 3 * i, job->rgba + 4 * i, 3);
        memset(job->alpha.pixels + 3 * i, job->rgba[4 * i + 3], 3);
    }

    png_uint_32 exif_size = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(png, info, &exif_size, &exif)) job->orientation = exif_orientation(exif, exif_size);
    png_textp chunks;
    int nchunks = job->text_key ? png_get_text(png, info, &chunks, NULL) : 0;
    for (int i = 0; i < nchunks && !job->text; i++)
        if (strcmp(chunks[i].key, job->text_key) == 0 && !(job->text = strdup(chunks[i].text)))
            return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    return KILN_OK;
}

/* The pixels, with text_key the value of that text chunk (*text, NULL
 * when the file has none), with alpha its alpha (*alpha zeroed when the
 * file has none). */
static kiln_status decode_png(const uint8_t *data, size_t size, const char *label, kiln_image *out,
                              const char *text_key, char **text, kiln_image *alpha, bool *color_key)
{
    /* IHDR comes first; its size is checked before libpng allocates or reads on. */
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0)
        TRY(check_side(read_u32(data + 16, false), read_u32(data + 20, false), label));
    png_job *job = calloc(1, sizeof *job);
    if (!job) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    job->data = data, job->size = size, job->orientation = 1, job->text_key = text_key, job->keep_alpha = alpha != NULL;
    kiln_status st;
    job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning);
    if (job->png) job->info = png_create_info_struct(job->png);
    if (!job->info) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    } else if (setjmp(job->jump)) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: bad PNG: %s", label, job->message);
    } else {
        st = png_read_pixels(job, label);
    }
    png_destroy_read_struct(&job->png, &job->info, NULL);
    free(job->rows);
    free(job->rgba);
    if (st == KILN_OK) st = apply_orientation(&job->img, job->orientation);
    if (st == KILN_OK && job->has_alpha) st = apply_orientation(&job->alpha, job->orientation);
    if (st == KILN_OK) *out = job->img;
    else kiln_image_free(&job->img);
    if (st == KILN_OK && color_key) *color_key = job->color_key;
    if (st == KILN_OK && alpha) *alpha = job->alpha;
    else kiln_image_free(&job->alpha);
    if (st == KILN_OK && text) *text = job->text;
    else free(job->text);
    free(job);
    return st;
}

/* ---- JPEG ---------------------------------------------------------------- */

/* Where libjpeg's error handlers (found through client_data) report to:
 * libjpeg reports errors by longjmp, like libpng. */
typedef struct jpeg_trap {
    struct jpeg_error_mgr err;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int damage; /* a warning that means lost data, 0 if none */
} jpeg_trap;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_trap *trap = cinfo->client_data;
    cinfo->err->format_message(cinfo, trap->message);
    longjmp(trap->jump, 1);
}

/* libjpeg goes on after a warning; most are harmless (extra bytes before a
 * marker), but these two mean the data ran out and the rest of the picture is
 * made up. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    jpeg_trap *trap = cinfo->client_data;
    int code = cinfo->err->msg_code;
    if (level < 0 && !trap->damage && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) {
        trap->damage = code;
        cinfo->err->format_message(cinfo, trap->message);
    }
}

/* Both directions' setup: errors jump to trap->jump. */
static struct jpeg_error_mgr *jpeg_trap_errors(jpeg_trap *trap)
{
    jpeg_std_error(&trap->err);
    trap->err.error_exit = jpeg_on_error;
    trap->err.emit_message = jpeg_on_message;
    return &trap->err;
}

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    jpeg_trap trap;
    uint8_t *cmyk_row; /* (width * 4) */
    kiln_image img;
} jpeg_job;

/* Adobe CMYK JPEGs store inverted ink; Pillow reads them as "CMYK;I" and
 * converts with R = (255 - K) - C (255 - K) / 255 rounded, its MULDIV255. */
static uint8_t cmyk_channel(unsigned stored_c, unsigned stored_k)
{
    unsigned c = 255 - stored_c, nk = stored_k; /* nk = 255 - K */
    unsigned t = c * nk + 128;
    return (uint8_t)(nk - (((t >> 8) + t) >> 8));
}

static kiln_status jpeg_read_pixels(jpeg_job *job, const uint8_t *data, size_t size, const char *label)
{
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);
    TRY(check_side(cinfo->image_width, cinfo->image_height, label));
    int orientation = 1; /* read now: finishing the decompression frees the saved markers */
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
            orientation = exif_orientation(m->data, m->data_length);
    bool cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(cinfo);
    int width = (int)cinfo->output_width, height = (int)cinfo->output_height;
    if (cinfo->output_components != (cmyk ? 4 : 3))
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: JPEG with %d components", label, cinfo->output_components);
    TRY(kiln_image_alloc(&job->img, width, height));
    if (cmyk && !(job->cmyk_row = malloc((size_t)width * 4)))
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *row = job->img.pixels + (size_t)cinfo->output_scanline * width * 3;
        JSAMPROW target = cmyk ? job->cmyk_row : row;
        jpeg_read_scanlines(cinfo, &target, 1);
        for (int x = 0; cmyk && x < width; x++) {
            const uint8_t *ink = job->cmyk_row + 4 * x;
            for (int c = 0; c < 3; c++) row[3 * x + c] = cmyk_channel(ink[c], ink[3]);
        }
    }
    jpeg_finish_decompress(cinfo);
    if (job->trap.damage)
        return kiln_fail(KILN_ERR_FORMAT, "%s: bad JPEG: %s (truncated?)", label, job->trap.message);
    return apply_orientation(&job->img, orientation);
}

static kiln_status decode_jpeg(const uint8_t *data, size_t size, const char *label, kiln_image *out)
{
    jpeg_job *job = calloc(1, sizeof *job);
    if (!job) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    job->cinfo.err = jpeg_trap_errors(&job->trap);
    job->cinfo.client_data = &job->trap;
    kiln_status st;
    if (setjmp(job->trap.jump)) {
        st = kiln_fail(KILN_ERR_FORMAT, "%s: bad JPEG: %s", label, job->trap.message);
    } else {
        jpeg_create_decompress(&job->cinfo);
        st = jpeg_read_pixels(job, data, size, label);
    }
    jpeg_destroy_decompress(&job->cinfo);
    free(job->cmyk_row);
    if (st == KILN_OK) *out = job->img;
    else kiln_image_free(&job->img);
    free(job);
    return st;
}

/* ---- Loading ------------------------------------------------------------- */

/* Names formats that users might hand in, to say so rather than "corrupt". */
static const char *other_format(const uint8_t *d, size_t n)
{
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return "GIF";
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) return "AVIF/HEIF";
    if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 14 && d[0] == 'B' && d[1] == 'M') return "BMP";
    if (n >= 4 && memcmp(d, "qoif", 4) == 0) return "QOI";
    return NULL;
}

/* The picture, and with alpha its alpha channel (zeroed where it has none:
 * a JPEG, a PNG without alpha or tRNS). */
static kiln_status decode_image(const void *data, size_t size, const char *label, kiln_image *out, kiln_image *alpha,
                                bool *color_key)
{
    const uint8_t *d = data;
    *out = (kiln_image){0};
    if (alpha) *alpha = (kiln_image){0};
    if (color_key) *color_key = false;
    if (size == 0) return kiln_fail(KILN_ERR_FORMAT, "%s: empty file", label);
    if (size >= 8 && memcmp(d, png_magic, 8) == 0) return decode_png(d, size, label, out, NULL, NULL, alpha, color_key);
    if (size >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff) return decode_jpeg(d, size, label, out);
    const char *format = other_format(d, size);
    if (format)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: a %s image; kiln reads PNG and JPEG (convert it first)", label,
                         format);
    return kiln_fail(KILN_ERR_FORMAT, "%s: not a PNG or JPEG file (unknown first bytes)", label);
}

kiln_status kiln_image_decode(const void *data, size_t size, const char *label, kiln_image *out)
{
    return decode_image(data, size, label, out, NULL, NULL);
}

kiln_status kiln_image_load_alpha(const char *path, kiln_image *out, kiln_image *alpha, bool *color_key)
{
    *out = (kiln_image){0};
    if (alpha) *alpha = (kiln_image){0};
    uint8_t *data;
    size_t size;
    TRY(kiln_read_file(path, MAX_FILE_BYTES, "an image file", &data, &size));
    kiln_status status = decode_image(data, size, path, out, alpha, color_key);
    free(data);
    return status;
}

kiln_status kiln_image_load(const char *path, kiln_image *out)
{
    if (!path || !out) return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_image_load: no path or no place for the image");
    return kiln_image_load_alpha(path, out, NULL, NULL);
}

kiln_status kiln_png_read_text(const char *path, const char *key, char **value)
{
    *value = NULL;
    uint8_t *data;
    size_t size;
    TRY(kiln_read_file(path, MAX_FILE_BYTES, "an image file", &data, &size));
    kiln_image img = {0};
    kiln_status st = size >= 8 && memcmp(data, png_magic, 8) == 0
                         ? decode_png(data, size, path, &img, key, value, NULL, NULL)
                         : kiln_fail(KILN_ERR_FORMAT, "%s: not a PNG file", path);
    free(data);
    kiln_image_free(&img);
    if (st == KILN_OK && !*value) st = kiln_fail(KILN_ERR_FORMAT, "%s: no \"%s\" text in this PNG", path, key);
    return st;
}

/* ---- Saving -------------------------------------------------------------- */

typedef struct png_write_job {
    jmp_buf jump;
    char message[256];
    png_structp png;
    png_infop info;
    png_textp chunks; /* (ntext) */
    png_bytep *rows;  /* (height) */
} png_write_job;

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return false;
    return true;
}

static kiln_status check_text(const kiln_png_text *text, size_t ntext, const char *path)
{
    for (size_t i = 0; i < ntext; i++) {
        const char *key = text[i].key;
        size_t n = key ? strlen(key) : 0;
        bool printable = n >= 1 && n <= 79;
        for (size_t j = 0; printable && j < n; j++) printable = key[j] >= 0x20 && key[j] < 0x7f;
        if (!printable)
            return kiln_fail(KILN_ERR_INVALID_ARG, "%s: PNG text key %zu must be 1-79 printable ASCII characters",
                             path, i);
        if (!text[i].value) return kiln_fail(KILN_ERR_INVALID_ARG, "%s: PNG text '%s' has no value", path, key);
    }
    return KILN_OK;
}

static void png_write_all(png_write_job *job, FILE *f, const kiln_image *img, const kiln_png_text *text,
                          size_t ntext)
{
    png_init_io(job->png, f);
    png_set_IHDR(job->png, job->info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(job->png, 4); /* SaveImage's compress_level */
    for (size_t i = 0; i < ntext; i++) {
        bool ascii = is_ascii(text[i].value);
        job->chunks[i] = (png_text){
            .compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE,
            .key = (png_charp)text[i].key,
            .text = (png_charp)text[i].value,
            .text_length = ascii ? strlen(text[i].value) : 0,
            .itxt_length = ascii ? 0 : strlen(text[i].value),
            .lang = ascii ? NULL : "",
            .lang_key = ascii ? NULL : "",
        };
    }
    if (ntext) png_set_text(job->png, job->info, job->chunks, (int)ntext);
    png_write_info(job->png, job->info);
    for (int y = 0; y < img->height; y++) job->rows[y] = img->pixels + (size_t)y * img->width * 3;
    png_write_image(job->png, job->rows);
    png_write_end(job->png, NULL);
}

/* Writes the whole PNG to an open file; errors name `path`. */
static kiln_status write_png(FILE *f, const char *path, const kiln_image *img, const kiln_png_text *text,
                             size_t ntext)
{
    png_write_job *job = calloc(1, sizeof *job);
    if (!job) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    kiln_status st = KILN_OK;
    job->chunks = calloc(ntext ? ntext : 1, sizeof *job->chunks);
    job->rows = malloc(sizeof *job->rows * (size_t)img->height);
    if (job->chunks && job->rows)
        job->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning);
    if (job->png) job->info = png_create_info_struct(job->png);
    if (!job->info) {
        st = kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    } else if (setjmp(job->jump)) {
        st = kiln_fail(KILN_ERR_IO, "%s: writing PNG: %s", path, job->message);
    } else {
        png_write_all(job, f, img, text, ntext);
    }
    png_destroy_write_struct(&job->png, &job->info);
    free(job->chunks);
    free(job->rows);
    free(job);
    return st;
}

/* ---- JPEG writing -------------------------------------------------------- */

/* Appends code point c to out as UTF-16BE. */
static size_t put_utf16be(uint8_t *out, uint32_t c)
{
    if (c >= 0x10000) {
        c -= 0x10000;
        uint32_t hi = 0xd800 + (c >> 10), lo = 0xdc00 + (c & 0x3ff);
        out[0] = (uint8_t)(hi >> 8), out[1] = (uint8_t)hi, out[2] = (uint8_t)(lo >> 8), out[3] = (uint8_t)lo;
        return 4;
    }
    out[0] = (uint8_t)(c >> 8), out[1] = (uint8_t)c;
    return 2;
}

/* The EXIF block (APP1: "Exif\0\0" and a little-endian TIFF structure) that
 * holds `text` as the Exif IFD's UserComment (tag 0x9286), where A1111 and
 * the tools that read its JPEGs look for the generation parameters: the
 * character code "ASCII\0\0\0" and the bytes, or, for other text,
 * "UNICODE\0" and UTF-16 big-endian as piexif writes it. IFD0 holds only
 * the pointer to the Exif IFD. */
static kiln_status exif_user_comment(const char *text, const char *path, uint8_t **out, size_t *size)
{
    enum { HEAD = 6 + 44, CODE = 8, MAX_APP1 = 65533 };
    bool ascii = is_ascii(text);
    size_t n = strlen(text), payload = 2 * n; /* UTF-16 takes at most 2 bytes a UTF-8 byte (or bad byte) */
    uint8_t *b = malloc(HEAD + CODE + payload);
    if (!b) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    size_t used = 0;
    if (ascii) {
        memcpy(b + HEAD, "ASCII\0\0\0", CODE);
        memcpy(b + HEAD + CODE, text, n);
        used = n;
    } else {
        memcpy(b + HEAD, "UNICODE\0", CODE);
        /* a malformed byte becomes U+FFFD */
        for (size_t i = 0; i < n;) {
            utf8proc_int32_t c;
            utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(n - i), &c);
            if (len < 1) c = 0xfffd, len = 1;
            used += put_utf16be(b + HEAD + CODE + used, (uint32_t)c);
            i += (size_t)len;
        }
    }
    size_t count = CODE + used;
    if (HEAD + count > MAX_APP1) {
        free(b);
        return kiln_fail(KILN_ERR_INVALID_ARG,
                         "%s: the parameters text (%zu bytes) does not fit a JPEG's 64 KB EXIF block; write a .png",
                         path, n);
    }
    static const uint8_t head[HEAD] = {
        'E', 'x', 'i', 'f', 0, 0,
        'I', 'I', 42, 0, 8, 0, 0, 0,                     /* TIFF header, IFD0 at 8 */
        1, 0, 0x69, 0x87, 4, 0, 1, 0, 0, 0, 26, 0, 0, 0, /* IFD0: ExifIFD (LONG) at 26 */
        0, 0, 0, 0,                                      /* no IFD1 */
        1, 0, 0x86, 0x92, 7, 0, 0, 0, 0, 0, 44, 0, 0, 0, /* Exif IFD: UserComment (UNDEFINED) at 44 */
        0, 0, 0, 0,
    };
    memcpy(b, head, HEAD);
    for (int i = 0; i < 4; i++) b[6 + 32 + i] = (uint8_t)(count >> (8 * i)); /* UserComment's count */
    *out = b;
    *size = HEAD + count;
    return KILN_OK;
}

/* On the heap, like png_write_job: what the longjmp must not lose. */
typedef struct jpeg_write_job {
    struct jpeg_compress_struct cinfo;
    jpeg_trap trap;
    uint8_t *exif; /* APP1, or NULL */
    size_t exif_size;
} jpeg_write_job;

static void jpeg_write_all(jpeg_write_job *job, FILE *f, const kiln_image *img)
{
    struct jpeg_compress_struct *cinfo = &job->cinfo;
    jpeg_create_compress(cinfo);
    jpeg_stdio_dest(cinfo, f);
    cinfo->image_width = (JDIMENSION)img->width;
    cinfo->image_height = (JDIMENSION)img->height;
    cinfo->input_components = 3;
    cinfo->in_color_space = JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, KILN_JPEG_QUALITY, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    if (job->exif) jpeg_write_marker(cinfo, JPEG_APP0 + 1, job->exif, (unsigned)job->exif_size);
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = img->pixels + (size_t)cinfo->next_scanline * img->width * 3;
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
}

/* ---- Saving -------------------------------------------------------------- */

const char *kiln_image_extension(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    return !dot || (slash && dot < slash) ? path + strlen(path) : dot;
}

kiln_image_format kiln_image_format_of(const char *path)
{
    const char *dot = kiln_image_extension(path);
    if (strcasecmp(dot, ".png") == 0) return KILN_IMAGE_PNG;
    if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0) return KILN_IMAGE_JPEG;
    return KILN_IMAGE_UNKNOWN;
}

/* Writes the whole JPEG to an open file, the "parameters" text (if any) as
 * EXIF; errors name `path`. */
static kiln_status write_jpeg(FILE *f, const char *path, const kiln_image *img, const kiln_png_text *text,
                              size_t ntext)
{
    jpeg_write_job *job = calloc(1, sizeof *job);
    if (!job) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < ntext && st == KILN_OK && !job->exif; i++) /* the first "parameters" */
        if (strcmp(text[i].key, "parameters") == 0)
            st = exif_user_comment(text[i].value, path, &job->exif, &job->exif_size);
    if (st == KILN_OK) {
        job->cinfo.err = jpeg_trap_errors(&job->trap);
        job->cinfo.client_data = &job->trap;
        if (setjmp(job->trap.jump)) st = kiln_fail(KILN_ERR_IO, "%s: writing JPEG: %s", path, job->trap.message);
        else jpeg_write_all(job, f, img);
        jpeg_destroy_compress(&job->cinfo);
    }
    free(job->exif);
    free(job);
    return st;
}

kiln_status kiln_image_save(const char *path, const kiln_image *img, const kiln_png_text *text, size_t ntext)
{
    if (!path || !img || !img->pixels || (ntext && !text))
        return kiln_fail(KILN_ERR_INVALID_ARG, "kiln_image_save: no path, image or texts");
    kiln_image_format format = kiln_image_format_of(path);
    if (format == KILN_IMAGE_UNKNOWN)
        return kiln_fail(KILN_ERR_UNSUPPORTED, "%s: kiln writes .png, .jpg and .jpeg files; name it so", path);
    if (!img->pixels || img->channels != 3 || img->width < 1 || img->height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: not an RGB image (%dx%d, %d channels)", path, img->width,
                         img->height, img->channels);
    TRY(check_text(text, ntext, path));
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return kiln_fail(KILN_ERR_INVALID_ARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return kiln_fail(KILN_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    kiln_status st = format == KILN_IMAGE_PNG ? write_png(f, path, img, text, ntext)
                                              : write_jpeg(f, path, img, text, ntext);
    /* fsync before rename: after a crash the name shows either the old file
     * or the whole new one, never a prefix. */
    if (st == KILN_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = kiln_fail(KILN_ERR_IO, "%s: writing: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && st == KILN_OK) st = kiln_fail(KILN_ERR_IO, "%s: closing: %s", tmp, strerror(errno));
    if (st == KILN_OK && rename(tmp, path) != 0)
        st = kiln_fail(KILN_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (st != KILN_OK) remove(tmp);
    return st;
}

/* ---- Tensor conversions -------------------------------------------------- */

static kiln_status from_planes(const float *x, int height, int width, bool decoded, kiln_image *out)
{
    TRY(kiln_image_alloc(out, width, height));
    size_t plane = (size_t)height * (size_t)width;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) {
            float v = x[c * plane + i];
            out->pixels[3 * i + c] = kiln_image_u8_from_unit(decoded ? kiln_image_unit_from_decoded(v) : v);
        }
    return KILN_OK;
}

kiln_status kiln_image_from_decoded(const float *x, int height, int width, kiln_image *out)
{
    return from_planes(x, height, width, true, out);
}

kiln_status kiln_image_from_unit(const float *x, int height, int width, kiln_image *out)
{
    return from_planes(x, height, width, false, out);
}

void kiln_image_to_unit(const kiln_image *img, float *x)
{
    size_t plane = (size_t)img->height * (size_t)img->width;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) x[c * plane + i] = (float)img->pixels[3 * i + c] / 255.0f;
}

void kiln_image_to_encoder_input(const kiln_image *img, float *x)
{
    kiln_image_to_unit(img, x);
    for (size_t i = 0; i < (size_t)3 * img->height * img->width; i++) x[i] = x[i] * 2.0f - 1.0f;
}

/* common_upscale's crop "center": the largest centred part of img with the
 * aspect ratio of width x height, at (*x0, *y0), *cw x *ch. */
kiln_status kiln_image_center_box(int w, int h, int width, int height, int *x0, int *y0, int *cw, int *ch)
{
    double old_aspect = (double)w / h, new_aspect = (double)width / height;
    *x0 = *y0 = 0;
    if (old_aspect > new_aspect) *x0 = (int)nearbyint((w - w * (new_aspect / old_aspect)) / 2);
    else if (old_aspect < new_aspect) *y0 = (int)nearbyint((h - h * (old_aspect / new_aspect)) / 2);
    *cw = w - 2 * *x0, *ch = h - 2 * *y0;
    if (*cw < 1 || *ch < 1 || width < 1 || height < 1)
        return kiln_fail(KILN_ERR_INVALID_ARG, "image %dx%d cannot be fitted to %dx%d", w, h, width, height);
    return KILN_OK;
}

static kiln_status center_box(const kiln_image *img, int width, int height, int *x0, int *y0, int *cw, int *ch)
{
    return kiln_image_center_box(img->width, img->height, width, height, x0, y0, cw, ch);
}

kiln_status kiln_image_resize_center_lanczos(const kiln_image *img, int width, int height, kiln_image *out)
{
    int x0, y0, cw, ch;
    TRY(center_box(img, width, height, &x0, &y0, &cw, &ch));
    return kiln_image_resize_lanczos(img, x0, y0, cw, ch, width, height, out);
}

kiln_status kiln_image_resize_center(const kiln_image *img, int width, int height, kiln_image *out)
{
    int x0, y0, cw, ch;
    TRY(center_box(img, width, height, &x0, &y0, &cw, &ch));
    TRY(kiln_image_alloc(out, width, height));
    for (int y = 0; y < height; y++) {
        const uint8_t *row = img->pixels + (size_t)3 * img->width * (y0 + kiln_nearest_exact_index(y, ch, height));
        for (int x = 0; x < width; x++)
            memcpy(out->pixels + 3 * ((size_t)y * width + x), row + 3 * (x0 + kiln_nearest_exact_index(x, cw, width)), 3);
    }
    return KILN_OK;
}

kiln_status kiln_image_crop_to_multiple(const kiln_image *img, int multiple, kiln_image *out)
{
    if (multiple < 1) return kiln_fail(KILN_ERR_INVALID_ARG, "crop to a multiple of %d: must be at least 1", multiple);
    int width = img->width / multiple * multiple, height = img->height / multiple * multiple;
    if (width == 0 || height == 0)
        return kiln_fail(KILN_ERR_INVALID_ARG, "image %dx%d is smaller than the VAE's factor %d", img->width,
                         img->height, multiple);
    int x0 = img->width % multiple / 2, y0 = img->height % multiple / 2;
    kiln_image cropped;
    TRY(kiln_image_alloc(&cropped, width, height));
    for (int y = 0; y < height; y++)
        memcpy(cropped.pixels + (size_t)y * width * 3, img->pixels + ((size_t)(y0 + y) * img->width + x0) * 3,
               (size_t)width * 3);
    if (out == img) kiln_image_free(out);
    *out = cropped;
    return KILN_OK;
}
