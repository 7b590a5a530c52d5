#include "shape_analysis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tools/train/analyze.py's thresholds */
#define MASK_DISTANCE 80.0
#define MIN_PIXELS 20
#define CENTER_RADIUS 8.0
#define TRIANGLE_DROP 0.05
#define TRIANGLE_FILL 0.66
#define CIRCLE_BELOW 0.875
#define LARGE_FROM 19

const char *const shape_colour_names[SHAPE_COLOURS] = {"red", "yellow", "green", "blue"};
static const double palette[SHAPE_COLOURS][3] = {{220, 30, 30}, {235, 210, 30}, {30, 180, 40}, {30, 60, 220}};

// rgb (0..255) -> HSV hue in degrees, as Python's colorsys
static double hue_degrees(const double rgb[3])
{
    double r = rgb[0] / 255.0, g = rgb[1] / 255.0, b = rgb[2] / 255.0;
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b));
    if (mx == mn) return 0.0;
    double d = mx - mn, rc = (mx - r) / d, gc = (mx - g) / d, bc = (mx - b) / d, h;
    if (r == mx) h = bc - gc;
    else if (g == mx) h = 2.0 + rc - bc;
    else h = 4.0 + gc - rc;
    h = fmod(h / 6.0, 1.0);
    if (h < 0) h += 1.0;
    return h * 360.0;
}

static const char *hue_name(const double rgb[3])
{
    double h = hue_degrees(rgb), best = 1e9;
    const char *name = NULL;
    for (int i = 0; i < SHAPE_COLOURS; i++) {
        double d = fabs(h - hue_degrees(palette[i]));
        d = fmin(d, 360.0 - d);
        if (d < best) best = d, name = shape_colour_names[i];
    }
    return name;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's median: the mean of the two middle values for an even count */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Keeps the largest 4-connected component of mask (n x n), first found on ties. */
static void largest_component(unsigned char *mask, int n)
{
    int *label = calloc((size_t)n * n, sizeof *label), *stack = malloc((size_t)n * n * sizeof *stack);
    int best = 0, best_size = 0, current = 0;
    for (int p0 = 0; p0 < n * n; p0++) {
        if (!mask[p0] || label[p0]) continue;
        label[p0] = ++current;
        int top = 0, size = 0;
        stack[top++] = p0;
        while (top) {
            int p = stack[--top], y = p / n, x = p % n;
            size++;
            int nb[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
            for (int k = 0; k < 4; k++) {
                int ny = nb[k][0], nx = nb[k][1];
                if (ny < 0 || ny >= n || nx < 0 || nx >= n) continue;
                int q = ny * n + nx;
                if (mask[q] && !label[q]) label[q] = current, stack[top++] = q;
            }
        }
        if (size > best_size) best = current, best_size = size;
    }
    if (best)
        for (int p = 0; p < n * n; p++) mask[p] = label[p] == best;
    free(label);
    free(stack);
}

shape_scene shape_analyze(const kiln_image *img)
{
    shape_scene s = {0};
    int n = img->width;
    const uint8_t *px = img->pixels;
    /* background: per-channel median over the 2-pixel frame */
    double *frame = malloc((size_t)n * n * sizeof *frame), background[3];
    for (int c = 0; c < 3; c++) {
        int count = 0;
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
                if (y < 2 || y >= n - 2 || x < 2 || x >= n - 2) frame[count++] = px[(y * n + x) * 3 + c];
        background[c] = median(frame, count);
    }
    free(frame);
    s.background = hue_name(background);

    unsigned char *mask = malloc((size_t)n * n);
    for (int p = 0; p < n * n; p++) {
        double d2 = 0;
        for (int c = 0; c < 3; c++) d2 += (px[p * 3 + c] - background[c]) * (px[p * 3 + c] - background[c]);
        mask[p] = sqrt(d2) > MASK_DISTANCE;
    }
    largest_component(mask, n);
    int count = 0, x0 = n, x1 = -1, y0 = n, y1 = -1;
    double sx = 0, sy = 0, rgb[3] = {0, 0, 0};
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            if (!mask[y * n + x]) continue;
            count++;
            sx += x, sy += y;
            x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1, y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
            for (int c = 0; c < 3; c++) rgb[c] += px[(y * n + x) * 3 + c];
        }
    free(mask);
    if (count < MIN_PIXELS) return s;
    for (int c = 0; c < 3; c++) rgb[c] /= count;
    double cx = sx / count + 0.5, cy = sy / count + 0.5;
    int w = x1 - x0 + 1, h = y1 - y0 + 1;
    double fill = count / (double)(w * h);
    /* how far the centroid sits below the box's middle: a blurred small
     * triangle can fill its box like a circle, but its weight is low */
    double drop = (cy - (y0 + y1 + 1) / 2.0) / h;
    s.shape = drop > TRIANGLE_DROP || fill < TRIANGLE_FILL ? "triangle" : fill < CIRCLE_BELOW ? "circle" : "square";
    s.colour = hue_name(rgb);
    if (fabs(cx - n / 2.0) < CENTER_RADIUS && fabs(cy - n / 2.0) < CENTER_RADIUS)
        s.position = "center";
    else if (cy < n / 2.0)
        s.position = cx < n / 2.0 ? "top left" : "top right";
    else
        s.position = cx < n / 2.0 ? "bottom left" : "bottom right";
    s.size = (w > h ? w : h) >= LARGE_FROM ? "large" : "small";
    return s;
}

static bool field_ok(const char *want, const char *found) { return !want || (found && strcmp(want, found) == 0); }

bool shape_agrees(const shape_scene *want, const shape_scene *found, char *why, size_t size)
{
    const char *names[5] = {"shape", "colour", "background", "position", "size"};
    const char *w[5] = {want->shape, want->colour, want->background, want->position, want->size};
    const char *f[5] = {found->shape, found->colour, found->background, found->position, found->size};
    bool ok = true;
    size_t used = 0;
    why[0] = '\0';
    for (int i = 0; i < 5; i++) {
        if (field_ok(w[i], f[i])) continue;
        ok = false;
        if (used < size) used += (size_t)snprintf(why + used, size - used, "%s%s=%s", used ? " " : "", names[i], f[i] ? f[i] : "none");
    }
    return ok;
}
