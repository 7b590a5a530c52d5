/* Reading a kiln-shapes scene back from its pixels: the C twin of
 * tools/train/analyze.py (keep the two in step; the rules and thresholds are
 * documented there). Used by the functional test that checks generated
 * pictures show what their prompts asked for. */
#ifndef KILN_TEST_SHAPE_ANALYSIS_H
#define KILN_TEST_SHAPE_ANALYSIS_H

#include <stdbool.h>

#include "image.h"

typedef struct shape_scene {
    const char *shape;      /* "circle", "square", "triangle"; NULL when nothing stands out */
    const char *colour;     /* palette name nearest in hue */
    const char *background;
    const char *position;   /* "top left", ..., "center" */
    const char *size;       /* "small", "large" */
} shape_scene;

/* The palette of tools/train/dataset.py. */
#define SHAPE_COLOURS 4
extern const char *const shape_colour_names[SHAPE_COLOURS];

/* Analyses a 64x64 image. */
shape_scene shape_analyze(const kiln_image *img);

/* Whether `found` matches `want` (fields NULL in `want` are not checked);
 * writes the mismatching field names into why. */
bool shape_agrees(const shape_scene *want, const shape_scene *found, char *why, size_t size);

#endif
