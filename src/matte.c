/*
 * matte — the alpha matte of a product photographed on a plain background.
 *
 *   background  a smooth model of the backdrop: per channel, a quadratic
 *               surface in (x, y) fitted by least squares to samples of the
 *               border frame, refitted twice without the outliers (a product
 *               touching the frame), so a gradient or a vignette is modelled
 *               and not mistaken for the product. The fit's robust sigma is
 *               the photo's noise; the share of the frame that fits says
 *               whether the background is plain at all.
 *   evidence    every pixel P against its background B: the scale
 *               s = P·B / B·B (how much lighter or darker) and the colour
 *               residual |P − sB| (how far from the background's hue). Both
 *               maps are smoothed a little (noise, JPEG blocks).
 *   regions     a flood fill from the border through background-like pixels
 *               (residual and lightness within the noise); it also walks
 *               into pixels that are the background's hue but darker — a
 *               cast shadow — as long as the darkening changes gradually
 *               from pixel to pixel (a shadow is soft; a grey product's edge
 *               is a step). Background-coloured pockets inside the product
 *               join the background when they match the model closely and
 *               are not specks (a hole in a handle); others stay product (a
 *               white print on a shirt, a highlight).
 *   edges       a band of a few pixels around the boundary: the foreground
 *               colour F is carried in from the solid interior (and from the
 *               crest of thin parts: straps, laces), the background colour B
 *               from the outside (shadow included), and alpha is the
 *               projection of P − B on F − B, so edges get fractional alpha.
 *   colour      edge pixels get their own colour back, unmixed from the
 *               background, (P − (1 − α)B) / α, leaning on F where alpha is
 *               small: no rim of the old background on any new backdrop.
 *   specks      connected components below 2% of the largest are dropped.
 *
 * Everything is plain loops over the pixels in a fixed order: deterministic,
 * single-threaded, a few passes over the image (about 15 ms at 1024²).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "matte.h"
#include "util.h"

#define NBASIS 6 /* 1, u, v, u², uv, v² */
#define BAND 3   /* half-width of the edge band, pixels */
#define MAX_SAMPLES 6000

static inline float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static inline float smoothstepf(float e0, float e1, float x)
{
    float t = clampf((x - e0) / (e1 - e0), 0, 1);
    return t * t * (3 - 2 * t);
}

/* ---- background model ---- */

typedef struct bgmodel {
    double c[3][NBASIS]; /* per channel, coefficients of 1, u, v, u², uv, v² */
    double noise;        /* robust per-channel sigma */
    double plain;        /* share of border samples within the noise */
    int w, h;
} bgmodel;

typedef struct sample {
    float u, v, rgb[3];
} sample;

static void basis(double u, double v, double b[NBASIS])
{
    b[0] = 1;
    b[1] = u;
    b[2] = v;
    b[3] = u * u;
    b[4] = u * v;
    b[5] = v * v;
}

static inline double model_at(const double c[NBASIS], double u, double v)
{
    return c[0] + u * (c[1] + u * c[3] + v * c[4]) + v * (c[2] + v * c[5]);
}

/* Solves the symmetric system m x = r (NBASIS²) in place by Gaussian
 * elimination with partial pivoting. false when singular. */
static bool solve(double m[NBASIS][NBASIS], double r[3][NBASIS], double x[3][NBASIS])
{
    for (int k = 0; k < NBASIS; k++) {
        int piv = k;
        for (int i = k + 1; i < NBASIS; i++)
            if (fabs(m[i][k]) > fabs(m[piv][k])) piv = i;
        if (fabs(m[piv][k]) < 1e-12) return false;
        if (piv != k) {
            for (int j = 0; j < NBASIS; j++) {
                double t = m[k][j];
                m[k][j] = m[piv][j];
                m[piv][j] = t;
            }
            for (int c = 0; c < 3; c++) {
                double t = r[c][k];
                r[c][k] = r[c][piv];
                r[c][piv] = t;
            }
        }
        for (int i = k + 1; i < NBASIS; i++) {
            double f = m[i][k] / m[k][k];
            for (int j = k; j < NBASIS; j++)
                m[i][j] -= f * m[k][j];
            for (int c = 0; c < 3; c++)
                r[c][i] -= f * r[c][k];
        }
    }
    for (int c = 0; c < 3; c++)
        for (int i = NBASIS; i-- > 0;) {
            double s = r[c][i];
            for (int j = i + 1; j < NBASIS; j++)
                s -= m[i][j] * x[c][j];
            x[c][i] = s / m[i][i];
        }
    return true;
}

/* Least squares over the samples whose keep flag is set. */
static bool fit(const sample *s, const unsigned char *keep, size_t n, double c[3][NBASIS])
{
    double m[NBASIS][NBASIS] = {{0}}, r[3][NBASIS] = {{0}};
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        double b[NBASIS];
        basis(s[i].u, s[i].v, b);
        for (int j = 0; j < NBASIS; j++) {
            for (int k = 0; k < NBASIS; k++)
                m[j][k] += b[j] * b[k];
            for (int ch = 0; ch < 3; ch++)
                r[ch][j] += b[j] * s[i].rgb[ch];
        }
        used++;
    }
    if (used < 4 * NBASIS) return false;
    /* A whisper of ridge regularisation on the curvature terms keeps a
     * fit from a thin frame from bulging in the middle. */
    for (int j = 3; j < NBASIS; j++)
        m[j][j] += 1e-3 * used;
    return solve(m, r, c);
}

static double residual(const sample *s, const double c[3][NBASIS])
{
    double d2 = 0;
    for (int ch = 0; ch < 3; ch++) {
        double d = s->rgb[ch] - model_at(c[ch], s->u, s->v);
        d2 += d * d;
    }
    return sqrt(d2 / 3);
}

/* The k-th smallest of v[0..n) (k < n), as a sort would put it there;
 * v is reordered. Hoare's selection, in place. */
static float select_kth(float *v, size_t n, size_t k)
{
    if (!n) return 0;
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return v[k];
}

/* Fits the background model to the border frame of px. */
static bool fit_background(const unsigned char *px, int w, int h, int nb, bgmodel *bm)
{
    int bw = (w < h ? w : h) / 64;
    if (bw < 2) bw = 2;
    size_t frame = (size_t)2 * bw * (w + h);
    size_t step = frame / MAX_SAMPLES + 1;
    sample *s = xmalloc((MAX_SAMPLES + 8) * 2 * sizeof *s);
    size_t n = 0, k = 0;
    for (int y = 0; y < h; y++) {
        bool row_border = y < bw || y >= h - bw;
        for (int x = 0; x < w; x++) {
            if (!row_border && x >= bw && x < w - bw) x = w - bw;
            if (k++ % step) continue;
            const unsigned char *p = px + ((size_t)y * w + x) * nb;
            s[n].u = (float)((x + 0.5) / w - 0.5);
            s[n].v = (float)((y + 0.5) / h - 0.5);
            for (int c = 0; c < 3; c++)
                s[n].rgb[c] = p[c];
            if (++n >= (MAX_SAMPLES + 8) * 2) break;
        }
        if (n >= (MAX_SAMPLES + 8) * 2) break;
    }
    unsigned char *keep = xmalloc(n);
    float *res = xmalloc(n * sizeof *res), *sorted = xmalloc(n * sizeof *sorted);
    /* Start from the per-channel median: far-off samples (a product that
     * touches the frame) do not take part in the first fit. */
    double med[3];
    for (int c = 0; c < 3; c++) {
        for (size_t i = 0; i < n; i++)
            sorted[i] = s[i].rgb[c];
        med[c] = select_kth(sorted, n, n / 2);
    }
    for (size_t i = 0; i < n; i++) {
        double d = 0;
        for (int c = 0; c < 3; c++)
            d += (s[i].rgb[c] - med[c]) * (s[i].rgb[c] - med[c]);
        keep[i] = sqrt(d / 3) < 24;
    }
    bool ok = fit(s, keep, n, bm->c);
    double sigma = 4;
    for (int iter = 0; ok && iter < 3; iter++) {
        for (size_t i = 0; i < n; i++)
            res[i] = sorted[i] = (float)residual(&s[i], bm->c);
        sigma = fmax(1.4826 * select_kth(sorted, n, n / 2), 0.6);
        double thr = fmax(3.5 * sigma, 5);
        for (size_t i = 0; i < n; i++)
            keep[i] = res[i] < thr;
        if (iter < 2) ok = fit(s, keep, n, bm->c);
    }
    size_t fits = 0;
    for (size_t i = 0; ok && i < n; i++)
        fits += res[i] < fmax(4 * sigma, 12);
    bm->noise = sigma;
    bm->plain = ok && n ? (double)fits / n : 0;
    bm->w = w;
    bm->h = h;
    free(s);
    free(keep);
    free(res);
    free(sorted);
    return ok;
}

/* ---- evidence maps ---- */

/* Separable 5-tap blur (σ ≈ 0.85 px) of a w×h float map, in place. */
static void soften(float *a, float *tmp, int w, int h)
{
    static const float k[5] = {0.06f, 0.24f, 0.40f, 0.24f, 0.06f};
    for (int y = 0; y < h; y++) {
        const float *r = a + (size_t)y * w;
        float *o = tmp + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            if (x >= 2 && x < w - 2) {
                o[x] = k[0] * r[x - 2] + k[1] * r[x - 1] + k[2] * r[x] + k[3] * r[x + 1] +
                       k[4] * r[x + 2];
                continue;
            }
            float s = 0, ws = 0;
            for (int i = -2; i <= 2; i++)
                if (x + i >= 0 && x + i < w) {
                    s += k[i + 2] * r[x + i];
                    ws += k[i + 2];
                }
            o[x] = s / ws;
        }
    }
    for (int y = 0; y < h; y++) {
        float *o = a + (size_t)y * w;
        if (y >= 2 && y < h - 2) {
            const float *r0 = tmp + (size_t)(y - 2) * w, *r1 = r0 + w, *r2 = r1 + w, *r3 = r2 + w,
                        *r4 = r3 + w;
            for (int x = 0; x < w; x++)
                o[x] = k[0] * r0[x] + k[1] * r1[x] + k[2] * r2[x] + k[3] * r3[x] + k[4] * r4[x];
            continue;
        }
        for (int x = 0; x < w; x++) {
            float s = 0, ws = 0;
            for (int i = -2; i <= 2; i++)
                if (y + i >= 0 && y + i < h) {
                    s += k[i + 2] * tmp[(size_t)(y + i) * w + x];
                    ws += k[i + 2];
                }
            o[x] = s / ws;
        }
    }
}

typedef struct maps {
    int w, h;
    float *s;           /* P·B / B·B, smoothed */
    float *fs;          /* how far from the background, in units of the threshold (< 1: like it) */
    unsigned char *shl; /* 1: the background's hue, darker, but not too dark: a shadow's */
    float t;            /* the lightness threshold, 0..255 units */
    float step;         /* the largest pixel-to-pixel change of s a shadow has */
} maps;

static inline void bg_at(const double row[3][3], double u, float B[3])
{
    for (int c = 0; c < 3; c++)
        B[c] = (float)(row[c][0] + u * (row[c][1] + u * row[c][2]));
}

/* The model's coefficients for one row v, as a quadratic in u. */
static void bg_row(const bgmodel *bm, double v, double row[3][3])
{
    for (int c = 0; c < 3; c++) {
        const double *k = bm->c[c];
        row[c][0] = k[0] + v * k[2] + v * v * k[5];
        row[c][1] = k[1] + v * k[4];
        row[c][2] = k[3];
    }
}

/* |B| per channel at every pixel of a row. */
static void bg_norm_row(const bgmodel *bm, int y, float *nb)
{
    int w = bm->w, h = bm->h;
    double row[3][3];
    bg_row(bm, (y + 0.5) / h - 0.5, row);
    for (int x = 0; x < w; x++) {
        float B[3];
        bg_at(row, (x + 0.5) / w - 0.5, B);
        nb[x] = sqrtf((B[0] * B[0] + B[1] * B[1] + B[2] * B[2] + 1) / 3);
    }
}

static void maps_build(const unsigned char *px, int nb, const bgmodel *bm, bool no_shadows, maps *m)
{
    int w = bm->w, h = bm->h;
    size_t n = (size_t)w * h;
    m->w = w;
    m->h = h;
    m->s = xmalloc(n * sizeof *m->s);
    m->fs = xmalloc(n * sizeof *m->fs);
    m->shl = xmalloc(n);
    m->t = (float)fmax(3.5 * bm->noise, 7);
    float tc = m->t * 1.3f, *ec = m->fs;
    /* |B| per pixel, for the lightness step below (computed once here). */
    float *bn = xmalloc(n * sizeof *bn);
    for (int y = 0; y < h; y++) {
        double row[3][3];
        bg_row(bm, (y + 0.5) / h - 0.5, row);
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            const unsigned char *p = px + i * nb;
            float B[3];
            bg_at(row, (x + 0.5) / w - 0.5, B);
            float bb = B[0] * B[0] + B[1] * B[1] + B[2] * B[2] + 1;
            bn[i] = sqrtf(bb / 3);
            float s = (p[0] * B[0] + p[1] * B[1] + p[2] * B[2]) / bb;
            float r0 = p[0] - s * B[0], r1 = p[1] - s * B[1], r2 = p[2] - s * B[2];
            m->s[i] = s;
            ec[i] = sqrtf(r0 * r0 + r1 * r1 + r2 * r2) / tc;
        }
    }
    float *tmp = xmalloc(n * sizeof *tmp);
    soften(m->s, tmp, w, h);
    soften(ec, tmp, w, h);
    /* Cast shadows only on a background light enough to show them. */
    float *nbr = tmp;
    double lum = 0;
    bg_norm_row(bm, h / 2, nbr);
    for (int x = 0; x < w; x++)
        lum += nbr[x] / w;
    bool shadows = lum > 80 && !no_shadows;
    m->step = (float)(0.03 + 1.2 * bm->noise / fmax(lum, 1));
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            float s = m->s[i], e = ec[i], dl = (s - 1) * bn[i];
            float adl = fabsf(dl) / m->t;
            m->shl[i] = shadows && e < 1 && dl < m->t && s >= 0.45f;
            m->fs[i] = e > adl ? e : adl;
        }
    }
    free(tmp);
    free(bn);
}

static void maps_free(maps *m)
{
    free(m->s);
    free(m->fs);
    free(m->shl);
}

/* How strongly pixel i stands out from its background, in units of the
 * threshold: < 1 is background-like. */
static inline float fgscore(const maps *m, size_t i)
{
    return m->fs[i];
}

/* Background's hue, not lighter, and not too dark to be a shadow. */
static inline bool shadow_like(const maps *m, size_t i)
{
    return m->shl[i];
}

/* ---- regions ---- */

enum { L_FG = 0, L_BG = 1, L_SHADOW = 2, L_POCKET = 3 };

/* Labels every pixel: L_BG / L_SHADOW flooded in from the border, L_POCKET
 * background pockets inside, L_FG the product. Returns the labels (caller
 * frees); *shadow_px counts the shadow pixels. */
static unsigned char *label_regions(const maps *m, size_t *shadow_px)
{
    int w = m->w, h = m->h;
    size_t n = (size_t)w * h;
    unsigned char *lab = xcalloc(n, 1);
    int *queue = xmalloc(n * sizeof *queue);
    size_t qt = 0, nshadow = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (y != 0 && y != h - 1 && x != 0 && x != w - 1) continue;
            size_t i = (size_t)y * w + x;
            if (!lab[i] && fgscore(m, i) < 1) {
                lab[i] = L_BG;
                queue[qt++] = (int)i;
            }
        }
    for (size_t qh = 0; qh < qt;) {
        int p = queue[qh++];
        int x = p % w, y = p / w;
        for (int k = 0; k < 4; k++) {
            int nx = x + (k == 0) - (k == 1), ny = y + (k == 2) - (k == 3);
            if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
            size_t q = (size_t)ny * w + nx;
            if (lab[q]) continue;
            if (fgscore(m, q) < 1) {
                lab[q] = L_BG;
            } else if (shadow_like(m, q) && fabsf(m->s[q] - m->s[p]) < m->step) {
                lab[q] = L_SHADOW;
                nshadow++;
            } else {
                continue;
            }
            queue[qt++] = (int)q;
        }
    }
    /* Pockets: background-like areas the flood could not reach. */
    size_t pocket_small = n / 2000 + 16;
    for (size_t i = 0; i < n; i++) {
        if (lab[i] || fgscore(m, i) >= 1) continue;
        qt = 0;
        queue[qt++] = (int)i;
        lab[i] = L_POCKET;
        double sum = 0;
        for (size_t qh = 0; qh < qt;) {
            int p = queue[qh++];
            sum += fgscore(m, (size_t)p);
            int x = p % w, y = p / w;
            for (int k = 0; k < 4; k++) {
                int nx = x + (k == 0) - (k == 1), ny = y + (k == 2) - (k == 3);
                if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                size_t q = (size_t)ny * w + nx;
                if (lab[q] || fgscore(m, q) >= 1) continue;
                lab[q] = L_POCKET;
                queue[qt++] = (int)q;
            }
        }
        /* A hole shows the background itself: large enough not to be a
         * speck of a print, and a close match of the model throughout. */
        bool hole = qt >= pocket_small && sum / (double)qt < 0.35;
        /* A print stays product: marked 4 so the scan does not revisit it. */
        for (size_t k = 0; k < qt; k++)
            lab[queue[k]] = hole ? L_POCKET : 4;
    }
    for (size_t i = 0; i < n; i++)
        if (lab[i] == 4) lab[i] = L_FG;
    free(queue);
    *shadow_px = nshadow;
    return lab;
}

/* ---- edges ---- */

typedef struct band_px {
    int idx;
    bool fg, has_f, has_b;
    int f_pass, b_pass; /* the pass that set F / B (0: known from the start) */
    float f[3], b[3];
} band_px;

/* The band: pixels within BAND of a fg/bg boundary, as a list, and
 * where[i] its index in the list, or -1. */
static band_px *find_band(const unsigned char *lab, int w, int h, int *where, size_t *nband)
{
    size_t n = (size_t)w * h;
    unsigned char *dist = xmalloc(n);
    memset(dist, 255, n);
    int *queue = xmalloc(n * sizeof *queue);
    size_t qt = 0;
    /* Boundary pixels: each pair of 4-neighbours compared once (right and
     * down), both marked when they differ. */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            bool fg = lab[i] == L_FG;
            bool r = x + 1 < w && (lab[i + 1] == L_FG) != fg;
            bool d = y + 1 < h && (lab[i + w] == L_FG) != fg;
            if (r) dist[i + 1] = 0;
            if (d) dist[i + w] = 0;
            if (r || d) dist[i] = 0;
        }
    for (size_t i = 0; i < n; i++)
        if (dist[i] == 0) queue[qt++] = (int)i;
    for (size_t qh = 0; qh < qt;) {
        int p = queue[qh++];
        if (dist[p] >= BAND) continue;
        int x = p % w, y = p / w;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int nx = x + dx, ny = y + dy;
                if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                size_t q = (size_t)ny * w + nx;
                if (dist[q] != 255) continue;
                dist[q] = (unsigned char)(dist[p] + 1);
                queue[qt++] = (int)q;
            }
    }
    band_px *band = xmalloc((qt ? qt : 1) * sizeof *band);
    for (size_t i = 0; i < n; i++)
        where[i] = -1;
    /* In scan order, so that every pass below visits them the same way. */
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (dist[i] == 255) continue;
        band[nb] = (band_px){.idx = (int)i, .fg = lab[i] == L_FG};
        where[i] = (int)nb++;
    }
    free(dist);
    free(queue);
    *nband = nb;
    return band;
}

/* Carries colours into the band: F from the product side (the solid
 * interior outside the band, and crests inside it), B from the background
 * side (outside the band), by averaging known 8-neighbours pass by pass. */
static void propagate(band_px *band, size_t nband, const int *where, const unsigned char *lab,
                      const unsigned char *px, int nb, int w, int h, bool want_f)
{
    for (int pass = 1; pass <= 2 * BAND + 3; pass++) {
        size_t changed = 0;
        for (size_t bi = 0; bi < nband; bi++) {
            band_px *b = &band[bi];
            if (want_f ? b->has_f : b->has_b) continue;
            int x = b->idx % w, y = b->idx / w;
            float s[3] = {0, 0, 0};
            int cnt = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy;
                    if ((!dx && !dy) || nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    size_t q = (size_t)ny * w + nx;
                    int wq = where[q];
                    const float *c = NULL;
                    float tmp[3];
                    if (wq < 0) {
                        bool fgq = lab[q] == L_FG;
                        if (fgq != want_f) continue;
                        for (int k = 0; k < 3; k++)
                            tmp[k] = px[q * nb + k];
                        c = tmp;
                    } else {
                        const band_px *o = &band[wq];
                        if (want_f ? (o->has_f && o->f_pass < pass)
                                   : (o->has_b && o->b_pass < pass))
                            c = want_f ? o->f : o->b;
                    }
                    if (!c) continue;
                    for (int k = 0; k < 3; k++)
                        s[k] += c[k];
                    cnt++;
                }
            if (!cnt) continue;
            for (int k = 0; k < 3; k++) {
                if (want_f)
                    b->f[k] = s[k] / cnt;
                else
                    b->b[k] = s[k] / cnt;
            }
            if (want_f) {
                b->has_f = true;
                b->f_pass = pass;
            } else {
                b->has_b = true;
                b->b_pass = pass;
            }
            changed++;
        }
        if (!changed) break;
    }
}

/* Fractional alpha and decontaminated colour for every band pixel. */
static void solve_band(unsigned char *px, int nb, int w, int h, const bgmodel *bm, const maps *m,
                       const unsigned char *lab, float *a)
{
    size_t n = (size_t)w * h, nband;
    int *where = xmalloc(n * sizeof *where);
    band_px *band = find_band(lab, w, h, where, &nband);
    propagate(band, nband, where, lab, px, nb, w, h, false);
    for (size_t bi = 0; bi < nband; bi++) {
        band_px *b = &band[bi];
        if (b->has_b) continue;
        double row[3][3];
        bg_row(bm, (b->idx / w + 0.5) / h - 0.5, row);
        bg_at(row, (b->idx % w + 0.5) / w - 0.5, b->b);
        b->has_b = true;
    }
    /* Crests: product pixels of the band that stand out from the
     * background at least as much as every product neighbour — the fully
     * covered middle of a strap — give F where the interior is too far. */
    float t = m->t;
    for (size_t bi = 0; bi < nband; bi++) {
        band_px *b = &band[bi];
        if (!b->fg) continue;
        const unsigned char *p = px + (size_t)b->idx * nb;
        float c2 = 0;
        for (int k = 0; k < 3; k++)
            c2 += (p[k] - b->b[k]) * (p[k] - b->b[k]);
        if (c2 < 4 * t * t * 3) continue;
        int x = b->idx % w, y = b->idx / w;
        bool crest = true;
        for (int dy = -1; dy <= 1 && crest; dy++)
            for (int dx = -1; dx <= 1 && crest; dx++) {
                int nx = x + dx, ny = y + dy;
                if ((!dx && !dy) || nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                size_t q = (size_t)ny * w + nx;
                if (lab[q] != L_FG) continue;
                const unsigned char *o = px + q * nb;
                float o2 = 0;
                for (int k = 0; k < 3; k++)
                    o2 += (o[k] - b->b[k]) * (o[k] - b->b[k]);
                if (o2 > c2 * 1.04f) crest = false;
            }
        if (!crest) continue;
        b->has_f = true;
        b->f_pass = 0;
        for (int k = 0; k < 3; k++)
            b->f[k] = p[k];
    }
    propagate(band, nband, where, lab, px, nb, w, h, true);

    float *na = xmalloc((nband ? nband : 1) * sizeof *na);
    for (size_t bi = 0; bi < nband; bi++) {
        band_px *b = &band[bi];
        const unsigned char *p = px + (size_t)b->idx * nb;
        if (!b->has_f)
            for (int k = 0; k < 3; k++)
                b->f[k] = p[k];
        float d[3], e[3], dd = 0, de = 0;
        for (int k = 0; k < 3; k++) {
            d[k] = b->f[k] - b->b[k];
            e[k] = p[k] - b->b[k];
            dd += d[k] * d[k];
            de += d[k] * e[k];
        }
        float al;
        if (dd >= 1.5f * 1.5f * t * t * 3)
            al = clampf(de / dd, 0, 1);
        else
            al = b->fg ? 1 : 0; /* too little contrast to tell better */
        if (al < 0.03f) al = 0;
        if (al > 0.97f) al = 1;
        na[bi] = al;
    }
    for (size_t bi = 0; bi < nband; bi++) {
        band_px *b = &band[bi];
        float al = na[bi];
        a[b->idx] = al;
        if (al <= 0) continue;
        unsigned char *p = px + (size_t)b->idx * nb;
        float wgt = smoothstepf(0.2f, 0.8f, al);
        for (int k = 0; k < 3; k++) {
            float un = (p[k] - (1 - al) * b->b[k]) / al;
            float v = wgt * clampf(un, 0, 255) + (1 - wgt) * b->f[k];
            p[k] = (unsigned char)lrintf(clampf(v, 0, 255));
        }
    }
    free(na);
    free(band);
    free(where);
}

/* ---- specks ---- */

/* Keeps the connected components (8-connected, alpha ≥ .5) that are not
 * specks (at least 2% of the largest one), and faint pixels only beside
 * them. */
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
        size_t qh = 0, qt = 0;
        queue[qt++] = (int)i;
        label[i] = nlabels;
        while (qh < qt) {
            int p = queue[qh++];
            int x = p % w, y = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    size_t q = (size_t)ny * w + nx;
                    if (label[q] || a[q] < 0.5f) continue;
                    label[q] = nlabels;
                    queue[qt++] = (int)q;
                }
        }
        area[nlabels] = qt;
    }
    size_t largest = 0;
    for (int l = 1; l <= nlabels; l++)
        if (area[l] > largest) largest = area[l];
    size_t keep = largest / 50;
    for (size_t i = 0; i < n; i++) {
        if (label[i] && area[label[i]] < keep) a[i] = 0;
        if (label[i] || a[i] <= 0) continue;
        int x = (int)(i % w), y = (int)(i / w);
        bool near = false;
        for (int dy = -1; dy <= 1 && !near; dy++)
            for (int dx = -1; dx <= 1 && !near; dx++) {
                int nx = x + dx, ny = y + dy;
                if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                int l = label[(size_t)ny * w + nx];
                near = l && area[l] >= keep;
            }
        if (!near) a[i] = 0;
    }
    free(label);
    free(queue);
    free(area);
}

/* ---- the matte ---- */

/* Contract in matte.h. */
int matte_compute(unsigned char *px, int w, int h, int nb, float *a, matte_info *info)
{
    return matte_compute_flags(px, w, h, nb, a, info, 0);
}

/* Contract in matte.h. */
int matte_compute_flags(unsigned char *px, int w, int h, int nb, float *a, matte_info *info,
                        unsigned flags)
{
    size_t n = (size_t)w * h;
    bgmodel bm;
    if (info) memset(info, 0, sizeof *info);
    if (w < 8 || h < 8 || !fit_background(px, w, h, nb, &bm)) return MATTE_ENOTPLAIN;
    if (info) {
        for (int c = 0; c < 3; c++)
            info->bg[c] = bm.c[c][0];
        info->noise = bm.noise;
        info->plain = bm.plain;
    }
    if (bm.plain < 0.6 || bm.noise > 12) return MATTE_ENOTPLAIN;
    maps m;
    maps_build(px, nb, &bm, (flags & MATTE_NO_SHADOWS) != 0, &m);
    size_t shadow_px;
    unsigned char *lab = label_regions(&m, &shadow_px);
    size_t fg = 0;
    for (size_t i = 0; i < n; i++)
        fg += lab[i] == L_FG;
    int rc = MATTE_OK;
    if (fg < n / 200 || fg > n - n / 12) {
        rc = MATTE_ENOTHING;
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        a[i] = lab[i] == L_FG ? 1.0f : 0.0f;
    solve_band(px, nb, w, h, &bm, &m, lab, a);
    remove_specks(a, w, h);
    if (info) info->shadow_px = shadow_px;
cleanup:
    free(lab);
    maps_free(&m);
    return rc;
}
