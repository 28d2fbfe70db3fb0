/*
 * provider_local.h — what the local-studio compositor's two files share:
 * the cut-out (provider_local_cutout.c: decode a product photo, key out its
 * plain background, trim) and the small math helpers both use. The render
 * itself is in provider_local.c. Included by provider_local*.c only; the
 * public interface is in provider.h.
 */
#ifndef SS_PROVIDER_LOCAL_H
#define SS_PROVIDER_LOCAL_H

#include "provider.h"

/* A product cut out of its background, trimmed to its bounding box. */
typedef struct cutout {
    int w, h;
    unsigned char *rgba; /* straight alpha, w*h*4 */
    float *alpha;        /* w*h, 0..1 */
    double foot0, foot1; /* footprint (bottom rows) as fractions of w */
    double mean[3];      /* mean colour of the opaque pixels */
} cutout;

/* Decodes an encoded image to 8-bit sRGB, at most max_side on its long
 * side. Returns 0, or -1 with the libvips error buffer set (the caller
 * clears it). On success *px (caller frees with g_free) is w*h*bands
 * bytes, bands 3 or 4. */
int cutout_decode(const provider_image *img, int max_side, unsigned char **px, int *w, int *h,
                  int *bands);

/* Cuts the product out of px (w×h×nb as from cutout_decode; takes
 * ownership and frees it) into *c, which then owns its buffers (release
 * with cutout_free). Never fails: a photo with no plain background becomes
 * a rounded card. */
void cutout_make(unsigned char *px, int w, int h, int nb, cutout *c);

/* Frees c's buffers and zeroes it; a zeroed cutout is fine too. */
void cutout_free(cutout *c);

static inline double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static inline double smoothstep(double e0, double e1, double x)
{
    double t = clampd((x - e0) / (e1 - e0), 0, 1);
    return t * t * (3 - 2 * t);
}

#endif
