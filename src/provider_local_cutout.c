/*
 * provider_local_cutout — the cut-out step of the local-studio compositor
 * (provider_local.c does the rest of the render).
 *
 * A product photo is decoded to 8-bit sRGB; the background colour is the
 * per-channel median of the border pixels; a flood fill from the border
 * through pixels close to it marks the background (so a white print inside
 * a garment survives), small trapped pockets join it; the alpha is soft
 * from the colour distance; specks are removed (connected components);
 * edge colours are bled in from the solid interior (no halo); a 1 px choke
 * and a small blur soften the edge; the result is trimmed to its bounding
 * box. A PNG with a real alpha channel is used as is; a photo with no
 * plain background becomes a rounded "card". Deterministic and
 * single-threaded apart from the libvips decode.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

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

/* The pixel indices of a frame bw pixels wide around a w×h image, in row
 * order. Caller frees; *n gets the count. */
static size_t *border_pixels(int w, int h, int bw, size_t *n)
{
    size_t *idx = xmalloc((size_t)w * h * sizeof *idx), cnt = 0;
    for (int y = 0; y < h; y++) {
        bool row_border = y < bw || y >= h - bw;
        for (int x = 0; x < w; x++) {
            if (!row_border && x >= bw && x < w - bw) {
                x = w - bw - 1;
                continue;
            }
            idx[cnt++] = (size_t)y * w + x;
        }
    }
    *n = cnt;
    return idx;
}

/* Per-channel median of the border pixels, and how uniform the border is. */
static void estimate_background(const unsigned char *px, int w, int h, int nb, double bg[3],
                                double *uniform, double *noise)
{
    unsigned hist[3][256];
    memset(hist, 0, sizeof hist);
    int bw = w < h ? w / 64 : h / 64;
    if (bw < 2) bw = 2;
    size_t n;
    size_t *border = border_pixels(w, h, bw, &n);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            hist[c][px[border[i] * nb + c]]++;
    for (int c = 0; c < 3; c++) {
        size_t acc = 0;
        int v = 0;
        while (v < 255 && (acc += hist[c][v]) < n / 2)
            v++;
        bg[c] = v;
    }
    size_t close = 0;
    double dsum = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = px + border[i] * nb;
        double d = sqrt((p[0] - bg[0]) * (p[0] - bg[0]) + (p[1] - bg[1]) * (p[1] - bg[1]) +
                        (p[2] - bg[2]) * (p[2] - bg[2]));
        if (d < 24) {
            close++;
            dsum += d;
        }
    }
    free(border);
    *uniform = n ? (double)close / n : 0;
    *noise = close ? dsum / close : 0;
}

/* Keeps the connected components (8-connected, alpha ≥ .5) that are not
 * specks: at least 2% of the largest one. */
static void remove_specks(float *a, int w, int h)
{
    size_t n = (size_t)w * h;
    int *label = xcalloc(n, sizeof *label);
    int *queue = xmalloc(n * sizeof *queue);
    size_t *area = NULL;
    int nlabels = 0;
    for (size_t i = 0; i < n; i++) {
        if (label[i] || a[i] < 0.5f) continue;
        nlabels++;
        area = xrealloc(area, (size_t)(nlabels + 1) * sizeof *area);
        size_t qh = 0, qt = 0, count = 0;
        queue[qt++] = (int)i;
        label[i] = nlabels;
        while (qh < qt) {
            int p = queue[qh++];
            count++;
            int px = p % w, py = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = px + dx, ny = py + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    size_t q = (size_t)ny * w + nx;
                    if (label[q] || a[q] < 0.5f) continue;
                    label[q] = nlabels;
                    queue[qt++] = (int)q;
                }
        }
        area[nlabels] = count;
    }
    size_t largest = 0;
    for (int l = 1; l <= nlabels; l++)
        if (area[l] > largest) largest = area[l];
    size_t keep = largest / 50;
    for (size_t i = 0; i < n; i++) {
        if (label[i] && area[label[i]] < keep) a[i] = 0;
        /* Faint pixels (< .5) next to nothing solid are noise too. */
        if (!label[i] && a[i] > 0) {
            int px = (int)(i % w), py = (int)(i / w);
            bool near = false;
            for (int dy = -1; dy <= 1 && !near; dy++)
                for (int dx = -1; dx <= 1 && !near; dx++) {
                    int nx = px + dx, ny = py + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    size_t q = (size_t)ny * w + nx;
                    near = label[q] && area[label[q]] >= keep;
                }
            if (!near) a[i] = 0;
        }
    }
    free(label);
    free(queue);
    free(area);
}

/* 3×3 minimum (choke by one pixel). */
static void erode(float *a, int w, int h)
{
    float *t = xmalloc((size_t)w * h * sizeof *t);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float m = a[(size_t)y * w + x];
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy;
                    float v = (nx < 0 || ny < 0 || nx >= w || ny >= h) ? 0 : a[(size_t)ny * w + nx];
                    if (v < m) m = v;
                }
            t[(size_t)y * w + x] = m;
        }
    memcpy(a, t, (size_t)w * h * sizeof *t);
    free(t);
}

/* Separable 5-tap blur (σ ≈ 0.85 px): the soft edge. */
static void soften(float *a, int w, int h)
{
    static const float k[5] = {0.06f, 0.24f, 0.40f, 0.24f, 0.06f};
    float *t = xmalloc((size_t)w * h * sizeof *t);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float s = 0;
            for (int i = -2; i <= 2; i++) {
                int nx = x + i;
                if (nx >= 0 && nx < w) s += k[i + 2] * a[(size_t)y * w + nx];
            }
            t[(size_t)y * w + x] = s;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float s = 0;
            for (int i = -2; i <= 2; i++) {
                int ny = y + i;
                if (ny >= 0 && ny < h) s += k[i + 2] * t[(size_t)ny * w + x];
            }
            a[(size_t)y * w + x] = s;
        }
    free(t);
}

/* Replaces the colour of edge pixels (not fully covered in `cover`) by the
 * average of their solid neighbours, a few pixels deep: the background
 * that was mixed into them never shows as a halo. */
static void bleed_edges(unsigned char *px, int nb, const float *cover, int w, int h)
{
    size_t n = (size_t)w * h;
    unsigned char *solid = xmalloc(n), *next = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        solid[i] = cover[i] >= 0.999f;
    /* Pixels beside a non-solid pixel are themselves suspect (JPEG ringing):
     * start from the solid core eroded by one. */
    memcpy(next, solid, n);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            if (!solid[i]) continue;
            for (int d = 0; d < 4; d++) {
                int nx = x + (d == 0) - (d == 1), ny = y + (d == 2) - (d == 3);
                if (nx < 0 || ny < 0 || nx >= w || ny >= h || !solid[(size_t)ny * w + nx]) {
                    next[i] = 0;
                    break;
                }
            }
        }
    memcpy(solid, next, n);
    for (int pass = 0; pass < 4; pass++) {
        memcpy(next, solid, n);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                size_t i = (size_t)y * w + x;
                if (solid[i]) continue;
                int s[3] = {0, 0, 0}, cnt = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int nx = x + dx, ny = y + dy;
                        if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                        size_t q = (size_t)ny * w + nx;
                        if (!solid[q]) continue;
                        for (int c = 0; c < 3; c++)
                            s[c] += px[q * nb + c];
                        cnt++;
                    }
                if (!cnt) continue;
                for (int c = 0; c < 3; c++)
                    px[i * nb + c] = (unsigned char)((s[c] + cnt / 2) / cnt);
                next[i] = 1;
            }
        memcpy(solid, next, n);
    }
    free(solid);
    free(next);
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

/* Grows a region from the pixels already in queue[0, *qt): 4-connected
 * neighbours that are unmarked and closer than thi to the background
 * colour get `mark` and join the queue. */
static void flood(const float *d, double thi, unsigned char *marks, int w, int h, int *queue,
                  size_t *qt, unsigned char mark)
{
    for (size_t qh = 0; qh < *qt;) {
        int p = queue[qh++];
        int x = p % w, y = p / w;
        for (int k = 0; k < 4; k++) {
            int nx = x + (k == 0) - (k == 1), ny = y + (k == 2) - (k == 3);
            if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
            size_t q = (size_t)ny * w + nx;
            if (marks[q] || d[q] >= thi) continue;
            marks[q] = mark;
            queue[(*qt)++] = (int)q;
        }
    }
}

/* Marks the background of the distance map d (w×h) for a threshold thi:
 * 1 flooded in from the border, 4 a small pocket trapped inside (a concave
 * corner the flood could not squeeze into), 3 a larger light area inside
 * (a white print), which stays foreground; 0 foreground. Caller frees. */
static unsigned char *mark_background(const float *d, double thi, int w, int h)
{
    size_t n = (size_t)w * h;
    unsigned char *isbg = xcalloc(n, 1);
    int *queue = xmalloc(n * sizeof *queue);
    size_t qt = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (y != 0 && y != h - 1 && x != 0 && x != w - 1) continue;
            size_t i = (size_t)y * w + x;
            if (d[i] < thi && !isbg[i]) {
                isbg[i] = 1;
                queue[qt++] = (int)i;
            }
        }
    flood(d, thi, isbg, w, h, queue, &qt, 1);
    size_t pocket_max = n / 5000 + 4;
    for (size_t i = 0; i < n; i++) {
        if (isbg[i] || d[i] >= thi) continue;
        qt = 0;
        queue[qt++] = (int)i;
        isbg[i] = 2;
        flood(d, thi, isbg, w, h, queue, &qt, 2);
        unsigned char mark = qt <= pocket_max ? 4 : 3;
        for (size_t k = 0; k < qt; k++)
            isbg[queue[k]] = mark;
    }
    free(queue);
    return isbg;
}

/* The coverage that decides which edge colours to re-bleed: a, but 0 where
 * a solid pixel is background-coloured (raw distance dr below thi) and
 * within two pixels of the background (slivers in concave corners). A
 * light print further inside is kept. Caller frees. */
static float *bleed_cover(const float *a, const float *dr, const unsigned char *isbg, double thi,
                          int w, int h)
{
    float *cover = xmalloc((size_t)w * h * sizeof *cover);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            cover[i] = a[i];
            if (a[i] < 1.0f || dr[i] >= thi) continue;
            for (int dy = -2; dy <= 2; dy++)
                for (int dx = -2; dx <= 2; dx++) {
                    int nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    unsigned char b = isbg[(size_t)ny * w + nx];
                    if (b == 1 || b == 4) cover[i] = 0;
                }
        }
    return cover;
}

/* Keys out a plain background of colour bg (noise: the border's mean
 * distance from it) into the alpha a (w×h), and bleeds the edge colours of
 * px. Falls back to the card when nothing (or everything) stands out. */
static void key_background(unsigned char *px, int w, int h, int nb, const double bg[3],
                           double noise, float *a)
{
    size_t n = (size_t)w * h;
    double thi = clampd(4 * noise + 18, 22, 48), tlo = thi * 0.45;
    float *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = px + i * nb;
        d[i] = (float)sqrt((p[0] - bg[0]) * (p[0] - bg[0]) + (p[1] - bg[1]) * (p[1] - bg[1]) +
                           (p[2] - bg[2]) * (p[2] - bg[2]));
    }
    /* Smooth the distance map first: sensor noise and JPEG blocks would
     * otherwise make a ragged edge. dr keeps the raw distances. */
    float *dr = xmalloc(n * sizeof *dr);
    memcpy(dr, d, n * sizeof *dr);
    soften(d, w, h);
    unsigned char *isbg = mark_background(d, thi, w, h);
    for (size_t i = 0; i < n; i++)
        a[i] = (isbg[i] == 1 || isbg[i] == 4) ? (float)smoothstep(tlo, thi, d[i]) : 1.0f;
    float *cover = bleed_cover(a, dr, isbg, thi, w, h);
    free(isbg);
    free(d);
    free(dr);
    remove_specks(a, w, h);
    size_t fg = 0;
    for (size_t i = 0; i < n; i++)
        fg += a[i] >= 0.5f;
    if (fg < n / 200 || fg > n - n / 12) {
        /* Nothing (or everything) stood out: show the whole photo. */
        card_alpha(a, w, h);
    } else {
        bleed_edges(px, nb, cover, w, h);
        erode(a, w, h);
        soften(a, w, h);
    }
    free(cover);
}

/* The alpha a (w×h) of px: its own alpha channel when it has a real one,
 * else the keyed-out plain background, else the card. */
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
    double bg[3], uniform, noise;
    estimate_background(px, w, h, nb, bg, &uniform, &noise);
    if (uniform < 0.6)
        card_alpha(a, w, h);
    else
        key_background(px, w, h, nb, bg, noise, a);
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
