/*
 * matte.h — the alpha matte of a product photographed on a plain
 * background (matte.c): background model, shadow separation, fractional
 * edges, colour decontamination. Used by the local-studio cut-out
 * (provider_local_cutout.c) and tested on its own (tests/unit/test_matte.c).
 */
#ifndef SS_MATTE_H
#define SS_MATTE_H

#include <stdbool.h>

/* Return codes of matte_compute. */
enum {
    MATTE_OK = 0,
    MATTE_ENOTPLAIN = -1, /* the border is not a plain (smoothly varying) background */
    MATTE_ENOTHING = -2,  /* nothing (or everything) stands out from the background */
};

/* What matte_compute learnt about the photo (for tests and logs). */
typedef struct matte_info {
    double bg[3];     /* the background model's colour at the centre */
    double noise;     /* robust sigma of the border around the model, 0..255 */
    double plain;     /* share of border samples that fit the model */
    size_t shadow_px; /* pixels darker than the background but of its hue, left out */
} matte_info;

/* Computes the alpha matte of px (w×h, nb = 3 or 4 bytes a pixel, 8-bit
 * sRGB; a 4th band is ignored) into a (w*h floats, 0..1, caller-owned),
 * and rewrites the colour of the edge pixels of px in place so that no
 * background colour stays mixed into them (decontamination). info may be
 * NULL. Returns MATTE_OK, or MATTE_ENOTPLAIN / MATTE_ENOTHING with a
 * untouched (px untouched too). Deterministic, single-threaded. */
int matte_compute(unsigned char *px, int w, int h, int nb, float *a, matte_info *info);

/* Flags of matte_compute_flags. */
enum {
    /* No cast-shadow separation: whatever is darker than the background
     * is foreground. For a person, whose dark clothes can be the
     * backdrop's hue at a shadow's darkness (dark grey trousers on a grey
     * sweep), where a shadow kept is better than legs lost. */
    MATTE_NO_SHADOWS = 1u << 0,
};

/* matte_compute with flags (MATTE_*); matte_compute is flags 0. */
int matte_compute_flags(unsigned char *px, int w, int h, int nb, float *a, matte_info *info,
                        unsigned flags);

#endif
