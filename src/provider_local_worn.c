/*
 * provider_local_worn — the pixel work of wearing a product on the model
 * photo (the geometry is placement.c's; provider_local.c runs the render).
 *
 *   worn_find      the person: the matte of the photo reduced to ≤ 512 px
 *                  (matte.c, no shadow separation: dark grey trousers on a
 *                  grey sweep look like a cast shadow), the body from it (placement_find_body), the
 *                  colour of the model's own top at the chest, and a smooth
 *                  estimate of the backdrop's colour around the person;
 *                  slivers of that backdrop the matte took for the person
 *                  (between an arm and the torso, the legs) cleared.
 *   worn_shade     a garment takes the photo's light: the low-frequency
 *                  luminance of the body beneath it (the pixels of the
 *                  model's own clothing there, blurred, relative to their
 *                  mean under the garment) multiplies the garment softly,
 *                  one factor for all three channels, so it keeps its hue.
 *   worn_cover     the model's own top where a top or dress with shoulders
 *                  leaves it showing (square shoulders above a flat-laid
 *                  tee's sloping ones, the collar opening) is painted over
 *                  with the garment's colour from the nearest part of the
 *                  garment (edge pixels unmixed from the skin or backdrop
 *                  beside them), so the garment covers the model's clothing; a
 *                  strappy dress leaves it above its waist, as a top worn
 *                  under it, and covers it beside its skirt.
 *   worn_tuck      trousers go under the model's own top: its hem
 *                  overlaps their waistband.
 *   worn_reveal    between the legs of trousers, the model's own trousers
 *                  (their specks and edge pixels too) give way to the new
 *                  backdrop.
 *   worn_backdrop  the photo's background behind the person replaced by a
 *                  style backdrop: edge pixels unmixed from the old
 *                  background (C + (1 − α)(N − B)), the matte's edge
 *                  refined at full resolution from the colours.
 *
 * Everything is plain loops in a fixed order (deterministic); the maps are
 * at the reduced resolution and sampled bilinearly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "matte.h"
#include "provider_local.h"
#include "util.h"

#define BG_CELL 4 /* the backdrop colour map's cell, in reduced pixels */

struct worn_person;
static float bg_at(const struct worn_person *wp, int c, double fx, double fy);

/* Bilinear sample of a w×h map m (nb floats a pixel, band c) at the
 * reduced-resolution position (fx, fy), clamped to the map. */
static float map_at(const float *m, int w, int h, int nb, int c, double fx, double fy)
{
    if (fx < 0) fx = 0;
    if (fy < 0) fy = 0;
    if (fx > w - 1) fx = w - 1;
    if (fy > h - 1) fy = h - 1;
    int x0 = (int)fx, y0 = (int)fy;
    int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    float tx = (float)(fx - x0), ty = (float)(fy - y0);
    const float *r0 = m + (size_t)y0 * w * nb, *r1 = m + (size_t)y1 * w * nb;
    float top = r0[x0 * nb + c] + (r0[x1 * nb + c] - r0[x0 * nb + c]) * tx;
    float bot = r1[x0 * nb + c] + (r1[x1 * nb + c] - r1[x0 * nb + c]) * tx;
    return top + (bot - top) * ty;
}

/* One box blur of radius r along the rows of src into dst (both
 * w×h×nb), band by band; the window is cut at the ends. */
static void box_rows(const float *src, float *dst, int w, int h, int nb, int r)
{
    for (int y = 0; y < h; y++)
        for (int c = 0; c < nb; c++) {
            const float *s = src + (size_t)y * w * nb + c;
            float *d = dst + (size_t)y * w * nb + c;
            double acc = 0;
            int cnt = 0;
            for (int i = 0; i <= r && i < w; i++, cnt++)
                acc += s[i * nb];
            for (int i = 0; i < w; i++) {
                d[i * nb] = (float)(acc / cnt);
                if (i + r + 1 < w) acc += s[(i + r + 1) * nb], cnt++;
                if (i - r >= 0) acc -= s[(i - r) * nb], cnt--;
            }
        }
}

/* The same along the columns, a whole row of sums at a time (in memory
 * order). */
static void box_cols(const float *src, float *dst, int w, int h, int nb, int r)
{
    size_t rw = (size_t)w * nb;
    double *acc = xcalloc(rw, sizeof *acc);
    int cnt = 0;
    for (int i = 0; i <= r && i < h; i++, cnt++)
        for (size_t k = 0; k < rw; k++)
            acc[k] += src[i * rw + k];
    for (int y = 0; y < h; y++) {
        for (size_t k = 0; k < rw; k++)
            dst[y * rw + k] = (float)(acc[k] / cnt);
        if (y + r + 1 < h) {
            for (size_t k = 0; k < rw; k++)
                acc[k] += src[(y + r + 1) * rw + k];
            cnt++;
        }
        if (y - r >= 0) {
            for (size_t k = 0; k < rw; k++)
                acc[k] -= src[(y - r) * rw + k];
            cnt--;
        }
    }
    free(acc);
}

/* Blurs m (w×h×nb) in place: three box passes each way, about a gaussian
 * of sigma √(r(r+1)). */
static void blur(float *m, int w, int h, int nb, int r)
{
    float *t = xmalloc((size_t)w * h * nb * sizeof *t);
    for (int it = 0; it < 3; it++) {
        box_rows(m, t, w, h, nb, r);
        box_cols(t, m, w, h, nb, r);
    }
    free(t);
}

static inline double luma(const unsigned char *p)
{
    return 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2];
}

/* The mean colour of the person's pixels in a box of radius rad around
 * (x, y) of the reduced photo; false when none is covered. */
static bool person_colour(const worn_person *wp, int x, int y, int rad, double out[3])
{
    double s[3] = {0, 0, 0}, n = 0;
    for (int yy = y - rad; yy <= y + rad; yy++)
        for (int xx = x - rad; xx <= x + rad; xx++) {
            if (xx < 0 || yy < 0 || xx >= wp->sw || yy >= wp->sh) continue;
            size_t i = (size_t)yy * wp->sw + xx;
            if (wp->alpha[i] < 0.9f) continue;
            for (int c = 0; c < 3; c++)
                s[c] += wp->rgb[i * 3 + c];
            n++;
        }
    if (n < 1) return false;
    for (int c = 0; c < 3; c++)
        out[c] = s[c] / n;
    return true;
}

/* How much a colour p is the reference colour ref under some other light:
 * its chromaticity close, its brightness within a wide range. 0..1. */
static double same_cloth(const double p[3], const double ref[3])
{
    double ps = p[0] + p[1] + p[2] + 1, rs = ref[0] + ref[1] + ref[2] + 1;
    double d = 0;
    for (int c = 0; c < 3; c++)
        d += fabs(p[c] / ps - ref[c] / rs);
    double lr = ps / rs;
    double gate = smoothstep(0.45, 0.60, lr) * (1 - smoothstep(1.5, 1.8, lr));
    return exp(-(d / 0.035) * (d / 0.035)) * gate;
}

/* Where the reference colour of a kind's cloth is read, in output pixels:
 * the chest for a top or dress, the left thigh for trousers. */
static void cloth_point(const placement_body *b, enum placement_kind k, double *x, double *y)
{
    int hp = b->bottom - b->top;
    if (k == PLACEMENT_TROUSERS) {
        *x = b->cx - b->hip_w / 4.0;
        *y = b->hip_y + 0.12 * hp;
    } else {
        *x = b->cx;
        *y = b->shoulder_y + 0.10 * hp;
    }
}

#define SLIVER_MAX 6 /* the widest sliver of old background cleared, reduced pixels */

/* Whether reduced pixel i is the old backdrop's colour (within tol, the
 * summed |Δ| of the three channels). */
static bool backdrop_like(const worn_person *wp, size_t i, double tol)
{
    int x = (int)(i % (size_t)wp->sw), y = (int)(i / (size_t)wp->sw);
    double d = 0;
    for (int c = 0; c < 3; c++)
        d += fabs(wp->rgb[i * 3 + c] - bg_at(wp, c, x, y));
    return d < tol;
}

/* Slivers of the old backdrop the matte took for the person (the narrow
 * gap between an arm and the torso or between the legs, too thin for its
 * smoothed evidence, or given a little alpha at its edge): row by row, a
 * run of at most SLIVER_MAX pixels of the backdrop's colour with the
 * person on both sides is cleared. A wider patch of that colour stays (a print). */
static void clear_slivers(worn_person *wp)
{
    int sw = wp->sw, sh = wp->sh;
    for (int y = 0; y < sh; y++) {
        float *a = wp->alpha + (size_t)y * sw;
        size_t row = (size_t)y * sw;
        for (int x = 1; x < sw - 1; x++) {
            if (a[x - 1] <= 0.02f || !backdrop_like(wp, row + x, 24) ||
                backdrop_like(wp, row + x - 1, 24))
                continue;
            int e = x + 1;
            while (e < sw - 1 && e - x <= SLIVER_MAX && backdrop_like(wp, row + e, 24))
                e++;
            /* [x, e): the run; the person (or its edge) on both sides. */
            if (e - x <= SLIVER_MAX && a[e] > 0.02f)
                for (int k = x; k < e; k++)
                    a[k] = 0;
            x = e - 1;
        }
    }
}

/* Contract in provider_local.h. */
bool worn_find(const unsigned char *cv, int W, int H, worn_person *wp)
{
    memset(wp, 0, sizeof *wp);
    int f = ((W > H ? W : H) + 511) / 512;
    if (f < 1) f = 1;
    int sw = W / f, sh = H / f;
    unsigned char *small = xmalloc((size_t)sw * sh * 3);
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < sw; x++)
            memcpy(small + ((size_t)y * sw + x) * 3, cv + ((size_t)y * f * W + (size_t)x * f) * 3,
                   3);
    unsigned char *work = xmalloc((size_t)sw * sh * 3);
    memcpy(work, small, (size_t)sw * sh * 3);
    float *a = xmalloc((size_t)sw * sh * sizeof *a);
    bool found = matte_compute_flags(work, sw, sh, 3, a, NULL, MATTE_NO_SHADOWS) == MATTE_OK &&
                 placement_find_body(a, small, sw, sh, f, &wp->body);
    if (!found) {
        free(small);
        free(work);
        free(a);
        return false;
    }
    *wp = (worn_person){
        .sw = sw, .sh = sh, .f = f, .rgb = small, .fg = work, .alpha = a, .body = wp->body};
    /* The backdrop's colour around the person: the background pixels
     * summed into cells of BG_CELL², blurred, normalised by their share
     * (it varies slowly: a quarter of the resolution is plenty). */
    int bw = wp->bw = (sw + BG_CELL - 1) / BG_CELL, bh = wp->bh = (sh + BG_CELL - 1) / BG_CELL;
    float *bg = wp->bg = xcalloc((size_t)bw * bh * 4, sizeof *bg);
    double mean[3] = {0, 0, 0}, nbg = 0;
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < sw; x++) {
            size_t i = (size_t)y * sw + x;
            if (a[i] > 0.02f) continue;
            float *o = bg + ((size_t)(y / BG_CELL) * bw + x / BG_CELL) * 4;
            for (int c = 0; c < 3; c++) {
                o[c] += small[i * 3 + c];
                mean[c] += small[i * 3 + c];
            }
            o[3] += 1;
            nbg++;
        }
    blur(bg, bw, bh, 4, (sw > sh ? sw : sh) / (60 * BG_CELL) + 1);
    for (size_t i = 0; i < (size_t)bw * bh; i++) {
        float wgt = bg[i * 4 + 3];
        for (int c = 0; c < 3; c++)
            bg[i * 4 + c] =
                wgt > 1e-3f ? bg[i * 4 + c] / wgt : (float)(nbg > 0 ? mean[c] / nbg : 128);
    }
    clear_slivers(wp);
    return true;
}

/* The backdrop's colour around the person at the reduced position
 * (fx, fy), band c. */
static float bg_at(const worn_person *wp, int c, double fx, double fy)
{
    double k = 0.5 * (BG_CELL - 1);
    return map_at(wp->bg, wp->bw, wp->bh, 4, c, (fx - k) / BG_CELL, (fy - k) / BG_CELL);
}

/* Contract in provider_local.h. */
void worn_free(worn_person *wp)
{
    free(wp->rgb);
    free(wp->fg);
    free(wp->alpha);
    free(wp->bg);
    memset(wp, 0, sizeof *wp);
}

/* A window of the reduced photo: the light map is computed only where
 * the garment is, and as far around it as its blur reaches. */
typedef struct window {
    int x0, y0, w, h;
} window;

/* The light map of the cloth of kind k beneath rect r: per pixel of the
 * window *win of the reduced photo (rect r and the blur's reach around it),
 * the factor a garment there is multiplied by (1 where the body says
 * nothing). Caller frees. */
static float *shade_map(const worn_person *wp, enum placement_kind k, const placement_rect *r,
                        window *win)
{
    int sw = wp->sw, sh = wp->sh, f = wp->f;
    int hp = (wp->body.bottom - wp->body.top) / f, rad = (int)(0.02 * hp) + 2;
    /* Three box passes of radius rad reach 3·rad; bilinear sampling one
     * more. Beyond that the blur's result inside the rect is the same. */
    int reach = 3 * rad + 2, x0 = r->x / f - reach, y0 = r->y / f - reach;
    int x1 = (r->x + r->w) / f + reach + 1, y1 = (r->y + r->h) / f + reach + 1;
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > sw ? sw : x1, y1 = y1 > sh ? sh : y1;
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    *win = (window){x0, y0, x1 - x0, y1 - y0};
    int ww = win->w, wh = win->h;
    size_t n = (size_t)ww * wh;
    double px, py, ref[3];
    cloth_point(&wp->body, k, &px, &py);
    float *m = xcalloc(n * 2, sizeof *m);
    if (!person_colour(wp, (int)(px / f), (int)(py / f), wp->body.head_w / (4 * f) + 1, ref)) {
        for (size_t i = 0; i < n; i++)
            m[i] = 1;
        return m;
    }
    /* Numerator and weight: the luminance of the pixels of that cloth. */
    for (int y = 0; y < wh; y++)
        for (int x = 0; x < ww; x++) {
            size_t i = (size_t)(y0 + y) * sw + x0 + x, o = (size_t)y * ww + x;
            if (wp->alpha[i] <= 0) continue;
            const unsigned char *p = wp->rgb + i * 3;
            double c[3] = {p[0], p[1], p[2]};
            double wgt = wp->alpha[i] * same_cloth(c, ref);
            m[o * 2] = (float)(wgt * luma(p));
            m[o * 2 + 1] = (float)wgt;
        }
    blur(m, ww, wh, 2, rad);
    /* Their mean under the garment. */
    double sn = 0, sd = 0;
    int rx0 = r->x / f, rx1 = (r->x + r->w) / f, ry0 = r->y / f, ry1 = (r->y + r->h) / f;
    for (int y = ry0 < 0 ? 0 : ry0; y < ry1 && y < sh; y++)
        for (int x = rx0 < 0 ? 0 : rx0; x < rx1 && x < sw; x++) {
            size_t o = (size_t)(y - y0) * ww + (x - x0);
            sn += m[o * 2];
            sd += m[o * 2 + 1];
        }
    double mean = sd > 1e-6 ? sn / sd : 0;
    for (size_t i = 0; i < n; i++) {
        double num = m[i * 2], den = m[i * 2 + 1], fac = 1;
        if (mean > 1 && den > 1e-4) {
            double conf = smoothstep(0.03, 0.35, den);
            fac = clampd(1 + 0.85 * conf * (num / den / mean - 1), 0.55, 1.30);
        }
        m[i] = (float)fac;
    }
    return m;
}

/* Contract in provider_local.h. */
void worn_shade(const worn_person *wp, enum placement_kind k, const placement_rect *r, float *px,
                int pw, int ph)
{
    if (k != PLACEMENT_TOP && k != PLACEMENT_DRESS && k != PLACEMENT_TROUSERS) return;
    window win;
    float *m = shade_map(wp, k, r, &win);
    double f = wp->f;
    for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
            float *s = px + ((size_t)y * pw + x) * 4;
            if (s[3] <= 0) continue;
            float fac =
                map_at(m, win.w, win.h, 1, 0, (r->x + x) / f - win.x0, (r->y + y) / f - win.y0);
            for (int c = 0; c < 3; c++)
                s[c] = s[c] * fac < s[3] ? s[c] * fac : s[3];
        }
    free(m);
}

/* Where the garment is solid (alpha ≥ .95), per column the first such
 * row at or below each row (-1: none), and per row the first and last
 * solid columns. */
typedef struct solid_index {
    int *below;        /* pw×ph */
    int *left, *right; /* ph */
} solid_index;

static void solid_index_build(const float *px, int pw, int ph, solid_index *si)
{
    si->below = xmalloc((size_t)pw * ph * sizeof *si->below);
    si->left = xmalloc((size_t)ph * sizeof *si->left);
    si->right = xmalloc((size_t)ph * sizeof *si->right);
    for (int x = 0; x < pw; x++) {
        int next = -1;
        for (int y = ph - 1; y >= 0; y--) {
            if (px[((size_t)y * pw + x) * 4 + 3] >= 0.95f * 255) next = y;
            si->below[(size_t)y * pw + x] = next;
        }
    }
    for (int y = 0; y < ph; y++) {
        si->left[y] = -1;
        si->right[y] = -1;
        for (int x = 0; x < pw; x++)
            if (px[((size_t)y * pw + x) * 4 + 3] >= 0.95f * 255) {
                if (si->left[y] < 0) si->left[y] = x;
                si->right[y] = x;
            }
    }
}

static void solid_index_free(solid_index *si)
{
    free(si->below);
    free(si->left);
    free(si->right);
}

/* Whether the garment is solid at (gx, gy) (garment coordinates): the
 * canvas there is covered by the garment itself. */
static bool solid_at(const float *px, int pw, int ph, int gx, int gy)
{
    return gx >= 0 && gy >= 0 && gx < pw && gy < ph &&
           px[((size_t)gy * pw + gx) * 4 + 3] >= 0.999f * 255;
}

/* The mean straight colour of the solid garment pixels in the window of
 * rows [y0, y0 + wy) × columns [x0 − 1, x0 + 1]; false when none. */
static bool garment_colour(const float *px, int pw, int ph, int x0, int y0, int wy, double out[3])
{
    double s[3] = {0, 0, 0};
    int n = 0;
    for (int y = y0; y < y0 + wy && y < ph; y++)
        for (int x = x0 - 1; x <= x0 + 1; x++) {
            if (x < 0 || y < 0 || x >= pw) continue;
            const float *p = px + ((size_t)y * pw + x) * 4;
            if (p[3] < 0.95f * 255) continue;
            for (int c = 0; c < 3; c++)
                s[c] += p[c] * 255 / p[3];
            n++;
        }
    if (!n) return false;
    for (int c = 0; c < 3; c++)
        out[c] = s[c] / n;
    return true;
}

/* The colour the garment would have at canvas pixel (gx, gy) (garment
 * coordinates) were it extended there: from the nearest solid part below
 * it in its column, else beside it in its row, a few pixels in from the
 * edge (so no seam or edge is copied). false when there is none. */
static bool extension_colour(const float *px, int pw, int ph, const solid_index *si, int gx, int gy,
                             int inset, double out[3])
{
    int row = gy < 0 ? 0 : gy >= ph ? ph - 1 : gy;
    if (gx >= 0 && gx < pw) {
        int b = si->below[(size_t)row * pw + gx];
        if (b >= 0 && garment_colour(px, pw, ph, gx, b + inset, 2 * inset, out)) return true;
    }
    if (si->left[row] < 0) return false;
    int x = gx < si->left[row] ? si->left[row] + inset : si->right[row] - inset;
    return garment_colour(px, pw, ph, x, row, 2 * inset, out);
}

/* Whether a garment (premultiplied RGBA, pw×ph) has shoulders: rows
 * between 12% and 20% of its height at least half covered, as a tee's or
 * a sleeved dress's are; a strappy dress's are not (two straps), and the
 * model's top shows between and beside them as a top under a pinafore
 * would, rather than being painted over into a tabard. */
static bool has_shoulders(const float *px, int pw, int ph)
{
    int wide = 0, rows = 0;
    for (int y = ph * 12 / 100; y < ph * 20 / 100; y++, rows++) {
        int n = 0;
        for (int x = 0; x < pw; x++)
            n += px[((size_t)y * pw + x) * 4 + 3] >= 0.5f * 255;
        wide += n * 2 >= pw;
    }
    return rows && wide * 2 > rows;
}

/* The solid width (outermost columns, alpha ≥ .5) of row y of px. */
static int solid_width(const float *px, int pw, int y)
{
    int l = -1, r = -1;
    for (int x = 0; x < pw; x++)
        if (px[((size_t)y * pw + x) * 4 + 3] >= 0.5f * 255) {
            if (l < 0) l = x;
            r = x;
        }
    return l < 0 ? 0 : r - l + 1;
}

/* A dress's waist: the lowest of its narrowest rows between 25% and 55%
 * of its height (where the skirt begins). */
static int waist_row(const float *px, int pw, int ph)
{
    int y0 = ph * 25 / 100, y1 = ph * 55 / 100, best = ph / 2, bw = pw + 1;
    for (int y = y0; y < y1; y++) {
        int n = solid_width(px, pw, y);
        if (n && n < bw) bw = n;
    }
    for (int y = y0; y < y1; y++) {
        int n = solid_width(px, pw, y);
        if (n && n <= bw + 2) best = y;
    }
    return best;
}

/* How much each canvas pixel of the box [x0, x1) × [y0, y1) is the
 * model's own top (colour ref) on the person: 0..1, row-major. Caller
 * frees. */
static float *cloth_map(const worn_person *wp, const unsigned char *cv, int W, const double ref[3],
                        int x0, int y0, int x1, int y1)
{
    int bw = x1 - x0, f = wp->f;
    float *m = xcalloc((size_t)bw * (y1 - y0), sizeof *m);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            double a = map_at(wp->alpha, wp->sw, wp->sh, 1, 0, (double)x / f, (double)y / f);
            if (a < 0.05) continue;
            const unsigned char *d = cv + ((size_t)y * W + x) * 3;
            double c[3] = {d[0], d[1], d[2]};
            m[(size_t)(y - y0) * bw + x - x0] = (float)(same_cloth(c, ref) * fmin(1, a * 1.5));
        }
    return m;
}

/* The minimum of m (w×h) over each pixel's 3×3 neighbourhood (clamped at
 * the border): lines a pixel or two wide vanish — the mixed pixels along
 * an edge between two other colours, which can match a top's colour.
 * Caller frees. */
static float *erode(const float *m, int w, int h)
{
    /* Separable: the minimum along the rows, then of those along the
     * columns (the maps are finite: plain comparisons, no fminf calls). */
    float *t = xmalloc((size_t)w * h * sizeof *t), *o = xmalloc((size_t)w * h * sizeof *o);
    for (int y = 0; y < h; y++) {
        const float *r = m + (size_t)y * w;
        float *d = t + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            float v = r[x];
            if (x > 0 && r[x - 1] < v) v = r[x - 1];
            if (x + 1 < w && r[x + 1] < v) v = r[x + 1];
            d[x] = v;
        }
    }
    for (int y = 0; y < h; y++) {
        const float *up = t + (size_t)(y > 0 ? y - 1 : y) * w, *mid = t + (size_t)y * w;
        const float *dn = t + (size_t)(y + 1 < h ? y + 1 : y) * w;
        float *d = o + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            float v = mid[x];
            if (up[x] < v) v = up[x];
            if (dn[x] < v) v = dn[x];
            d[x] = v;
        }
    }
    free(t);
    return o;
}

#define CB 2 /* worn_cover's box border: how far an edge pixel looks for the top */

/* Whether the model's top (eroded weight me ≥ .5) is beside box pixel at
 * (row stride st): within its 3×3 neighbourhood, or for a pixel that is
 * part the top's colour itself (m ≥ .2: a row of the top blurred by the
 * photo's chroma with the skin beside it) within CB pixels; (*nx, *ny) the
 * offset of the strongest such neighbour. */
static bool top_beside(const float *me, const float *m, size_t at, int st, int *nx, int *ny)
{
    float wn = 0;
    *nx = *ny = 0;
    for (int rad = 1; rad <= CB && wn < 0.5f; rad++) {
        if (rad > 1 && m[at] < 0.2f) break;
        for (int dy = -rad; dy <= rad; dy++)
            for (int dx = -rad; dx <= rad; dx++) {
                float v = me[at + (ptrdiff_t)dy * st + dx];
                if (v > wn) wn = v, *nx = dx, *ny = dy;
            }
    }
    return wn >= 0.5f;
}

/* How much of the top (colour K) an edge pixel d between it and the
 * colour B holds: the projection of d − B on K − B, at least wgt. */
static double unmix_share(const unsigned char *d, const unsigned char *K, const double B[3],
                          double wgt)
{
    double kb = 0, cb = 0;
    for (int c = 0; c < 3; c++) {
        kb += (K[c] - B[c]) * (K[c] - B[c]);
        cb += (d[c] - B[c]) * (K[c] - B[c]);
    }
    return kb > 100 ? clampd(cb / kb, wgt, 1) : wgt;
}

/* Contract in provider_local.h. The pixels of the model's top take the
 * garment's colour by how much they are that top; an edge pixel next to
 * it (the top's colour mixed with the backdrop's or the skin's) has the
 * top's part exchanged for the garment's: C + α(G − K), with K the
 * neighbouring top colour and α the projection of C − B on K − B. */
void worn_cover(const worn_person *wp, enum placement_kind k, const placement_rect *r,
                const float *px, int pw, int ph, unsigned char *cv, int W, int H)
{
    if (k != PLACEMENT_TOP && k != PLACEMENT_DRESS) return;
    bool shoulders = has_shoulders(px, pw, ph);
    if (!shoulders && k != PLACEMENT_DRESS) return;
    const placement_body *b = &wp->body;
    int hp = b->bottom - b->top, f = wp->f;
    double cx, cy, ref[3];
    cloth_point(b, PLACEMENT_TOP, &cx, &cy);
    if (!person_colour(wp, (int)(cx / f), (int)(cy / f), b->head_w / (4 * f) + 1, ref)) return;
    int y0 = shoulders ? b->shoulder_y - (int)(0.10 * hp) : r->y + waist_row(px, pw, ph);
    int y1 = (int)(fmax(b->hip_y, b->top_hem_y) + 0.01 * hp);
    int x0 = r->x - r->w / 4, x1 = r->x + r->w + r->w / 4;
    y0 = y0 < b->top ? b->top : y0;
    y0 = y0 < CB ? CB : y0;
    x0 = x0 < CB ? CB : x0;
    y1 = y1 > H - CB ? H - CB : y1;
    x1 = x1 > W - CB ? W - CB : x1;
    if (x1 <= x0 || y1 <= y0) return;
    int inset = (int)(0.006 * hp) + 2, bw = x1 - x0, st = bw + 2 * CB;
    float *m = cloth_map(wp, cv, W, ref, x0 - CB, y0 - CB, x1 + CB, y1 + CB);
    float *me = erode(m, st, y1 - y0 + 2 * CB);
    /* The box as it was: edge pixels read their neighbours from it. */
    unsigned char *orig = xmalloc((size_t)st * (y1 - y0 + 2 * CB) * 3);
    for (int y = y0 - CB; y < y1 + CB; y++)
        memcpy(orig + (size_t)(y - y0 + CB) * st * 3, cv + ((size_t)y * W + x0 - CB) * 3,
               (size_t)st * 3);
    solid_index si;
    solid_index_build(px, pw, ph, &si);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            unsigned char *d = cv + ((size_t)y * W + x) * 3;
            size_t at = (size_t)(y - y0 + CB) * st + (x - x0 + CB);
            double wgt = me[at] >= 0.5f ? m[at] : 0;
            int nx, ny;
            if (!top_beside(me, m, at, st, &nx, &ny) || solid_at(px, pw, ph, x - r->x, y - r->y))
                continue;
            double g[3];
            if (!extension_colour(px, pw, ph, &si, x - r->x, y - r->y, inset, g)) continue;
            if (wgt < 0.5) {
                /* An edge pixel beside the top: unmix, from the colour on
                 * its other side (the skin of the neck, the backdrop) when
                 * that is not the top too, else the old backdrop's. */
                const unsigned char *K = orig + (at + (ptrdiff_t)ny * st + nx) * 3;
                size_t oo = at - (ptrdiff_t)ny * st - nx;
                double B[3];
                for (int c = 0; c < 3; c++)
                    B[c] = m[oo] < 0.2f ? orig[oo * 3 + c]
                                        : bg_at(wp, c, (double)x / f, (double)y / f);
                double a = unmix_share(d, K, B, wgt);
                for (int c = 0; c < 3; c++)
                    d[c] = (unsigned char)lrint(clampd(d[c] + a * (g[c] - K[c]), 0, 255));
                continue;
            }
            for (int c = 0; c < 3; c++)
                d[c] = (unsigned char)lrint(clampd(d[c] * (1 - wgt) + g[c] * wgt, 0, 255));
        }
    solid_index_free(&si);
    free(orig);
    free(me);
    free(m);
}

/* Contract in provider_local.h. */
void worn_tuck(const worn_person *wp, enum placement_kind k, const placement_rect *r, float *px,
               int pw, int ph, const unsigned char *cv, int W, int H)
{
    if (k != PLACEMENT_TROUSERS) return;
    const placement_body *b = &wp->body;
    int hp = b->bottom - b->top, f = wp->f;
    double cx, cy, ref[3];
    cloth_point(b, PLACEMENT_TOP, &cx, &cy);
    if (!person_colour(wp, (int)(cx / f), (int)(cy / f), b->head_w / (4 * f) + 1, ref)) return;
    int x0 = r->x < 0 ? 0 : r->x, x1 = r->x + pw > W ? W : r->x + pw;
    int y0 = r->y < 0 ? 0 : r->y, y1 = b->top_hem_y + (int)(0.01 * hp) + 2;
    if (y1 > r->y + ph) y1 = r->y + ph;
    if (y1 > H) y1 = H;
    if (x1 <= x0 || y1 <= y0) return;
    float *m = cloth_map(wp, cv, W, ref, x0, y0, x1, y1);
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            float t = 1 - m[(size_t)(y - y0) * (x1 - x0) + x - x0];
            float *s = px + ((size_t)(y - r->y) * pw + (x - r->x)) * 4;
            for (int c = 0; c < 4; c++)
                s[c] *= t;
        }
    free(m);
}

/* Per cell (ix, iy) of the reduced matte, 0..sw × 0..sh: 2 when every
 * pixel of the matte from (ix − 1, iy − 1) to (ix + 2, iy + 2) is solid,
 * 0 when every one is clear, 1 otherwise (an edge near). The canvas
 * pixels of a solid or clear cell need no more look. Caller frees. */
static unsigned char *cell_states(const worn_person *wp)
{
    int cw = wp->sw + 1, ch = wp->sh + 1;
    unsigned char *st = xmalloc((size_t)cw * ch);
    for (int iy = 0; iy < ch; iy++)
        for (int ix = 0; ix < cw; ix++) {
            bool solid = true, clear = true;
            for (int yy = iy - 1; yy <= iy + 2; yy++)
                for (int xx = ix - 1; xx <= ix + 2; xx++) {
                    if (xx < 0 || yy < 0 || xx >= wp->sw || yy >= wp->sh) continue;
                    float a = wp->alpha[(size_t)yy * wp->sw + xx];
                    solid = solid && a >= 0.999f;
                    clear = clear && a <= 0.001f;
                }
            st[(size_t)iy * cw + ix] = solid ? 2 : clear ? 0 : 1;
        }
    return st;
}

/* The alpha of canvas pixel C at the reduced position (fx, fy), refined
 * from its colour: its projection on F − B, F the person's own colour
 * near it (the matte's unmixed colours, weighted by their alpha), B the
 * backdrop's. a is the matte's (bilinear) alpha there. */
static double refine_alpha(const worn_person *wp, const unsigned char *C, double fx, double fy,
                           double a, const double B[3])
{
    double F[3] = {0, 0, 0}, sa = 0, fb = 0, cb = 0;
    int ix = (int)fx, iy = (int)fy;
    for (int yy = iy - 1; yy <= iy + 2; yy++)
        for (int xx = ix - 1; xx <= ix + 2; xx++) {
            if (xx < 0 || yy < 0 || xx >= wp->sw || yy >= wp->sh) continue;
            size_t j = (size_t)yy * wp->sw + xx;
            float aj = wp->alpha[j] * wp->alpha[j];
            for (int c = 0; c < 3; c++)
                F[c] += aj * wp->fg[j * 3 + c];
            sa += aj;
        }
    if (sa < 1e-3) return a;
    for (int c = 0; c < 3; c++) {
        F[c] /= sa;
        fb += (F[c] - B[c]) * (F[c] - B[c]);
        cb += (C[c] - B[c]) * (F[c] - B[c]);
    }
    double p = clampd(cb / fmax(fb, 1), 0, 1);
    if (a >= 0.999) return p < 0.25 && fb > 40 * 40 ? p : a; /* a sliver of backdrop */
    if (fb > 40 * 40) return p;
    return fb > 20 * 20 ? 0.5 * a + 0.5 * p : a;
}

/* The distance (RMS over the channels) of C from the line between the
 * colours B and K, the mix of the two nearest it. */
static double mix_residual(const unsigned char *C, const double B[3], const double K[3])
{
    double kb = 0, cb = 0, r = 0;
    for (int c = 0; c < 3; c++) {
        kb += (K[c] - B[c]) * (K[c] - B[c]);
        cb += (C[c] - B[c]) * (K[c] - B[c]);
    }
    double t = kb > 1 ? clampd(cb / kb, 0, 1) : 0;
    for (int c = 0; c < 3; c++) {
        double d = C[c] - (B[c] + t * (K[c] - B[c]));
        r += d * d;
    }
    return sqrt(r / 3);
}

/* How much canvas pixel C at (x, y) is a mix of the cloth ref and the old
 * backdrop there or the new one (N): 1 on the line between them, 0 from
 * 16 levels away. */
static double cloth_mix(const worn_person *wp, const double ref[3], const unsigned char *C,
                        const unsigned char *N, int x, int y)
{
    double B[3], Nd[3] = {N[0], N[1], N[2]};
    for (int c = 0; c < 3; c++)
        B[c] = bg_at(wp, c, (double)x / wp->f, (double)y / wp->f);
    double r = fmin(mix_residual(C, B, ref), mix_residual(C, Nd, ref));
    return 1 - smoothstep(8, 16, r);
}

/* Contract in provider_local.h. Between the legs of the trousers, from
 * 15% of their height down, the pixels of the model's own trousers (the
 * cloth at the left thigh, specks and lines a pixel wide too) and their
 * edge pixels beside them give way to the backdrop, by how much they are
 * that cloth. */
void worn_reveal(const worn_person *wp, enum placement_kind k, const placement_rect *r,
                 const float *px, int pw, int ph, unsigned char *cv, const unsigned char *bd, int W,
                 int H)
{
    if (k != PLACEMENT_TROUSERS || !bd) return;
    const placement_body *b = &wp->body;
    int f = wp->f;
    double cx, cy, ref[3];
    cloth_point(b, PLACEMENT_TROUSERS, &cx, &cy);
    if (!person_colour(wp, (int)(cx / f), (int)(cy / f), b->head_w / (4 * f) + 1, ref)) return;
    int y0 = r->y + r->h * 15 / 100, y1 = r->y + r->h, x0 = r->x, x1 = r->x + r->w;
    y0 = y0 < 1 ? 1 : y0;
    x0 = x0 < 1 ? 1 : x0;
    y1 = y1 > H - 1 ? H - 1 : y1;
    x1 = x1 > W - 1 ? W - 1 : x1;
    if (x1 <= x0 || y1 <= y0) return;
    int bw = x1 - x0;
    float *m = cloth_map(wp, cv, W, ref, x0 - 1, y0 - 1, x1 + 1, y1 + 1);
    solid_index si;
    solid_index_build(px, pw, ph, &si);
    /* How much each pixel of the gap gives way (-1: not in the gap). */
    float *rv = xmalloc((size_t)bw * (y1 - y0) * sizeof *rv);
    for (int y = y0; y < y1; y++) {
        int gy = y - r->y;
        float *o = rv + (size_t)(y - y0) * bw;
        for (int x = x0; x < x1; x++) {
            int gx = x - r->x;
            o[x - x0] = -1;
            if (gy < 0 || gy >= ph || si.left[gy] < 0 || gx <= si.left[gy] || gx >= si.right[gy] ||
                solid_at(px, pw, ph, gx, gy))
                continue;
            size_t at = (size_t)(y - y0 + 1) * (bw + 2) + (x - x0 + 1);
            float mean = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                    mean += m[at + dy * (bw + 2) + dx] / 9;
            /* The 3×3 mean (a dark cloth's chromaticity is noisy), or the
             * pixel's own for a speck of cloth; lines a pixel wide count
             * here (in the gap there is nothing else to keep); and a mix
             * of the cloth with the old or the new backdrop (the narrow
             * top of the model's own gap). */
            double a = smoothstep(0.15, 0.6, fmaxf(mean, m[at]));
            o[x - x0] = (float)fmax(a, cloth_mix(wp, ref, cv + ((size_t)y * W + x) * 3,
                                                 bd + ((size_t)y * W + x) * 3, x, y));
        }
    }
    /* The cloth's edge pixels beside it (its colour mixed with the
     * backdrop's, which the cloth test leaves out) give way as much: the
     * most of the row's 5 neighbours in the gap. */
    for (int y = y0; y < y1; y++) {
        const float *o = rv + (size_t)(y - y0) * bw;
        for (int x = x0; x < x1; x++) {
            if (o[x - x0] < 0) continue;
            float a = 0;
            for (int dx = -2; dx <= 2; dx++)
                if (x + dx >= x0 && x + dx < x1) a = fmaxf(a, o[x + dx - x0]);
            if (a <= 0) continue;
            size_t i = ((size_t)y * W + x) * 3;
            for (int c = 0; c < 3; c++)
                cv[i + c] = (unsigned char)lrint(cv[i + c] * (1 - a) + bd[i + c] * a);
        }
    }
    free(rv);
    solid_index_free(&si);
    free(m);
}

/* One canvas pixel d of an edge cell: the backdrop n behind the person,
 * d unmixed from the old background. */
static void backdrop_px(const worn_person *wp, unsigned char *d, const unsigned char *n, double fx,
                        double fy)
{
    double a = map_at(wp->alpha, wp->sw, wp->sh, 1, 0, fx, fy);
    if (a <= 0.001) {
        memcpy(d, n, 3);
        return;
    }
    double B[3];
    for (int c = 0; c < 3; c++)
        B[c] = bg_at(wp, c, fx, fy);
    a = refine_alpha(wp, d, fx, fy, a, B);
    if (a < 0.02) {
        memcpy(d, n, 3);
        return;
    }
    for (int c = 0; c < 3; c++)
        d[c] = (unsigned char)lrint(clampd(d[c] + (1 - a) * (n[c] - B[c]), 0, 255));
}

/* Contract in provider_local.h. Cell by cell of the reduced matte: a
 * solid cell's pixels stay, a clear cell's become the backdrop, an edge
 * cell's are unmixed pixel by pixel. */
void worn_backdrop(const worn_person *wp, unsigned char *cv, const unsigned char *bd, int W, int H)
{
    int f = wp->f;
    unsigned char *st = cell_states(wp);
    for (int y = 0; y < H; y++) {
        int iy = y / f < wp->sh ? y / f : wp->sh;
        for (int x0 = 0; x0 < W; x0 += f) {
            int ix = x0 / f < wp->sw ? x0 / f : wp->sw, x1 = x0 + f < W ? x0 + f : W;
            int state = st[(size_t)iy * (wp->sw + 1) + ix];
            size_t i = (size_t)y * W + x0;
            if (state == 2) continue;
            if (state == 0) {
                memcpy(cv + i * 3, bd + i * 3, (size_t)(x1 - x0) * 3);
                continue;
            }
            for (int x = x0; x < x1; x++, i++)
                backdrop_px(wp, cv + i * 3, bd + i * 3, (double)x / f, (double)y / f);
        }
    }
    free(st);
}
