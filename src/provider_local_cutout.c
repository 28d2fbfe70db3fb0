/*
 * provider_local_cutout — the cut-out step of the local-studio compositor
 * (provider_local.c does the rest of the render).
 *
 * A product photo is decoded to 8-bit sRGB; its alpha is the matte of its
 * plain background (matte.c: background model, cast shadow left out,
 * fractional edges, edge colours decontaminated); the result is trimmed to
 * its bounding box, with its footprint (the base the new shadow attaches
 * to) and mean colour. A PNG with a real alpha channel is used as is; a
 * photo with no plain background becomes a rounded "card". Deterministic
 * and single-threaded apart from the libvips decode.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "matte.h"
#include "provider_local.h"
#include "util.h"

/* Contract in provider_local.h. */
void cutout_free(cutout *c)
{
    free(c->rgba);
    free(c->alpha);
    memset(c, 0, sizeof *c);
}

/* Contract in provider_local.h. */
int cutout_decode(const provider_image *img, int max_side, unsigned char **px, int *w, int *h,
                  int *bands)
{
    VipsImage *ctx = vips_image_new();
    VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(ctx), 4);
    int rc = -1;
    if (vips_thumbnail_buffer(img->data, img->len, &t[0], max_side, "height", max_side, "size",
                              VIPS_SIZE_DOWN, NULL))
        goto cleanup;
    if (vips_colourspace(t[0], &t[1], VIPS_INTERPRETATION_sRGB, NULL)) goto cleanup;
    if (vips_cast_uchar(t[1], &t[2], NULL)) goto cleanup;
    VipsImage *u = t[2];
    int nb = u->Bands;
    if (nb != 3 && nb != 4) {
        if (vips_extract_band(u, &t[3], 0, "n", nb > 4 ? 4 : 3, NULL)) goto cleanup;
        u = t[3];
        nb = u->Bands;
    }
    size_t size;
    *px = vips_image_write_to_memory(u, &size);
    if (!*px) goto cleanup;
    *w = u->Xsize;
    *h = u->Ysize;
    *bands = nb;
    rc = 0;
cleanup:
    g_object_unref(ctx);
    return rc;
}

/* Alpha of a rounded rectangle the size of the image (the "card"). */
static void card_alpha(float *a, int w, int h)
{
    double r = 0.035 * (w < h ? w : h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = fmax(0, fmax(r - (x + 0.5), (x + 0.5) - (w - r)));
            double dy = fmax(0, fmax(r - (y + 0.5), (y + 0.5) - (h - r)));
            double d = sqrt(dx * dx + dy * dy);
            a[(size_t)y * w + x] = (float)clampd(r - d + 0.5, 0, 1);
        }
}

/* The alpha a (w×h) of px: its own alpha channel when it has a real one,
 * else the matte of its plain background (matte.c, which also cleans the
 * edge colours of px), else the card. */
static void product_alpha(unsigned char *px, int w, int h, int nb, float *a)
{
    size_t n = (size_t)w * h;
    bool have_alpha = false;
    if (nb == 4) {
        size_t clear = 0;
        for (size_t i = 0; i < n; i++)
            clear += px[i * 4 + 3] < 250;
        have_alpha = clear > n / 100;
    }
    if (have_alpha) {
        for (size_t i = 0; i < n; i++)
            a[i] = px[i * 4 + 3] / 255.0f;
        return;
    }
    if (matte_compute(px, w, h, nb, a, NULL) != MATTE_OK) card_alpha(a, w, h);
}

/* Footprint of c: the columns covered in the bottom 6% of its rows. */
static void footprint(cutout *c)
{
    int fy = c->h - 1 - (int)(c->h * 0.06);
    int f0 = c->w, f1 = -1;
    for (int y = fy < 0 ? 0 : fy; y < c->h; y++)
        for (int x = 0; x < c->w; x++)
            if (c->alpha[(size_t)y * c->w + x] > 0.5f) {
                if (x < f0) f0 = x;
                if (x > f1) f1 = x;
            }
    if (f1 < f0) {
        f0 = 0;
        f1 = c->w - 1;
    }
    c->foot0 = (double)f0 / c->w;
    c->foot1 = (double)(f1 + 1) / c->w;
}

/* Trims px and its alpha a (w×h) to the bounding box, with a pixel of air,
 * into *c (which then owns its buffers), with the mean colour of the
 * opaque pixels and the footprint. No pixel at all: the card. */
static void trim(const unsigned char *px, int w, int h, int nb, float *a, cutout *c)
{
    int x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (a[(size_t)y * w + x] > 0.02f) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) {
        card_alpha(a, w, h);
        x0 = y0 = 0;
        x1 = w - 1;
        y1 = h - 1;
    }
    x0 = x0 > 0 ? x0 - 1 : 0;
    y0 = y0 > 0 ? y0 - 1 : 0;
    x1 = x1 < w - 1 ? x1 + 1 : w - 1;
    y1 = y1 < h - 1 ? y1 + 1 : h - 1;
    c->w = x1 - x0 + 1;
    c->h = y1 - y0 + 1;
    c->rgba = xmalloc((size_t)c->w * c->h * 4);
    c->alpha = xmalloc((size_t)c->w * c->h * sizeof *c->alpha);
    double sum[3] = {0, 0, 0}, cnt = 0;
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++) {
            size_t si = (size_t)(y + y0) * w + (x + x0), di = (size_t)y * c->w + x;
            float av = a[si];
            c->alpha[di] = av;
            for (int k = 0; k < 3; k++)
                c->rgba[di * 4 + k] = px[si * nb + k];
            c->rgba[di * 4 + 3] = (unsigned char)lrintf(av * 255.0f);
            if (av > 0.9f) {
                for (int k = 0; k < 3; k++)
                    sum[k] += px[si * nb + k];
                cnt++;
            }
        }
    for (int k = 0; k < 3; k++)
        c->mean[k] = cnt ? sum[k] / cnt : 128;
    footprint(c);
}

/* Contract in provider_local.h. */
void cutout_make(unsigned char *px, int w, int h, int nb, cutout *c)
{
    float *a = xmalloc((size_t)w * h * sizeof *a);
    product_alpha(px, w, h, nb, a);
    trim(px, w, h, nb, a, c);
    free(a);
    g_free(px);
}
