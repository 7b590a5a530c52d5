/* What the LATENT transforms (latent.c) share with the rest of the API. */
#ifndef KILN_LATENT_H
#define KILN_LATENT_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"
#include "resample.h"

/* The most images one call makes; far above what fits a GPU at SD's sizes,
 * low enough that batch x size cannot overflow the sizes computed from it. */
#define KILN_LATENT_MAX_BATCH 256

/* A batch of 1 to KILN_LATENT_MAX_BATCH images, else an error naming `what`. */
kiln_status kiln_check_batch(const char *what, int batch);
/* The latent's floats. */
size_t kiln_latent_count(const kiln_latent *l);
/* to's batch_index: from's, mapped by place (NULL: none); false: out of memory. */
bool kiln_latent_copy_places(const kiln_latent *from, kiln_latent *to);
/* A latent of `batch` images of l's shape, its noise mask and concat l's
 * (one picture's each, serving the whole batch), a batch_index allocated
 * where `places`; its values and places to fill. */
kiln_status kiln_latent_like(const kiln_latent *l, int batch, bool places, const char *what, kiln_latent *out);
/* l resized to w x h latent pixels by m (with crop: its largest centred
 * part of that aspect ratio first, ComfyUI's "center"), its places kept, no
 * noise mask. */
kiln_status kiln_latent_resize(const kiln_latent *l, kiln_resample_method m, int w, int h, bool crop,
                               kiln_latent *out);

#endif
