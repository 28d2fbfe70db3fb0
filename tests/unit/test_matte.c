/*
 * Unit tests for the matte (matte.c) against photos the test constructs
 * with a known alpha: anti-aliased shapes (a body, a 3 px strap, a 2 px
 * lace, a disc) composited on an off-white background with a gradient, a
 * vignette and a soft cast shadow, plus noise and JPEG compression; also
 * white on light and dark on dark. Measured: IoU, the alpha error along the
 * edges, the alpha left in the shadow, and colour fidelity (the cut-out
 * over new backdrops against the truth over the same backdrops). The
 * figures are printed (run build/unit/test_matte --verbose).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "matte.h"
#include "util.h"

#define W 480
#define H 480
#define SS 4 /* supersampling of the shapes */

typedef struct scene {
    double bg[3];    /* background colour at the top */
    double grad;     /* how much darker the bottom is (0..1) */
    double vignette; /* edge darkening (0..1) */
    double shadow;   /* cast shadow darkness (0..1) */
    double body[3];  /* product colours */
    double strap[3];
    double disc[3];
    double noise; /* sigma, 0..255 */
    int jpeg_q;   /* 0: no JPEG */
} scene;

typedef struct truth {
    unsigned char *px;    /* the photo, W×H×3 */
    float *alpha;         /* true coverage */
    float *fg;            /* true product colour, W×H×3 */
    float *dark;          /* how much the shadow darkens the background (0..1) */
    unsigned char *strap; /* 1 inside the strap/lace region */
} truth;

static bool in_body(double x, double y)
{
    /* A garment-like body: a torso with shoulders and sleeves. */
    if (x >= 150 && x <= 330 && y >= 170 && y <= 390) return true;
    if (y >= 150 && y <= 250) {
        /* sleeves: a trapezoid on each side, slanted */
        double t = (y - 150) / 100.0;
        if (x >= 100 + 20 * t && x <= 150 && y <= 230 - 0 * t) return true;
        if (x >= 330 && x <= 380 - 20 * t && y <= 230) return true;
    }
    /* shoulders, a rounded top */
    double dx = (x - 240) / 140, dy = (y - 175) / 30;
    if (dx * dx + dy * dy <= 1 && y <= 175) return true;
    return false;
}

static bool in_strap(double x, double y)
{
    /* A 3 px strap rising from the left shoulder, slanted. */
    double d = fabs((x - 180) - (y - 150) * 0.3);
    if (y >= 60 && y <= 152 && d <= 1.5) return true;
    /* A 2 px lace hanging from the hem. */
    if (x >= 300 && x <= 302 && y >= 388 && y <= 440) return true;
    return false;
}

static bool in_disc(double x, double y)
{
    double dx = x - 240, dy = y - 270;
    return dx * dx + dy * dy <= 38 * 38;
}

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* The shapes, supersampled: the true alpha, the product colour and the
 * strap mask into t; the coverage also into cover (for the shadow). */
static void draw_shapes(const scene *sc, truth *t, float *cover)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t)y * W + x;
            int cb = 0, cs = 0, cd = 0;
            for (int sy = 0; sy < SS; sy++)
                for (int sx = 0; sx < SS; sx++) {
                    double X = x + (sx + 0.5) / SS, Y = y + (sy + 0.5) / SS;
                    if (in_disc(X, Y))
                        cd++;
                    else if (in_body(X, Y))
                        cb++;
                    else if (in_strap(X, Y))
                        cs++;
                }
            int tot = cb + cs + cd;
            t->alpha[i] = (float)tot / (SS * SS);
            cover[i] = t->alpha[i];
            if (cs) t->strap[i] = 1;
            for (int c = 0; c < 3; c++) {
                /* A gentle shading across the product keeps it "real". */
                double shade = 1 - 0.08 * (double)y / H;
                t->fg[i * 3 + c] =
                    tot ? (float)((cb * sc->body[c] + cs * sc->strap[c] + cd * sc->disc[c]) / tot *
                                  shade)
                        : 0;
            }
        }
}

/* One box blur of radius r of sh (W×H) along rows (horizontal) or
 * columns, through tmp. */
static void box_blur(float *sh, float *tmp, int r, bool horizontal)
{
    const float *src = horizontal ? sh : tmp;
    float *dst = horizontal ? tmp : sh;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = 0;
            int c = 0;
            for (int k = -r; k <= r; k++) {
                int xx = horizontal ? x + k : x, yy = horizontal ? y : y + k;
                if (xx >= 0 && xx < W && yy >= 0 && yy < H) {
                    s += src[(size_t)yy * W + xx];
                    c++;
                }
            }
            dst[(size_t)y * W + x] = (float)(s / c);
        }
}

/* The cast shadow: the silhouette moved down-right, blurred (a box blur
 * three times ≈ a gaussian of sigma 9 px). Caller frees. */
static float *cast_shadow(const float *cover)
{
    size_t n = (size_t)W * H;
    float *sh = xcalloc(n, sizeof *sh), *tmp = xcalloc(n, sizeof *tmp);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sx = x - 16, sy = y - 12;
            if (sx >= 0 && sy >= 0) sh[(size_t)y * W + x] = cover[(size_t)sy * W + sx];
        }
    for (int it = 0; it < 3; it++) {
        box_blur(sh, tmp, 9, true);
        box_blur(sh, tmp, 9, false);
    }
    free(tmp);
    return sh;
}

/* The photo: the product over the lit, shadowed background, plus noise. */
static void compose(const scene *sc, const float *sh, truth *t)
{
    uint64_t seed = 12345;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t)y * W + x;
            double u = (x + 0.5) / W - 0.5, v = (y + 0.5) / H - 0.5;
            double lit = (1 - sc->grad * (v + 0.5)) * (1 - sc->vignette * 2 * (u * u + v * v));
            t->dark[i] = (float)(sc->shadow * sh[i]);
            double a = t->alpha[i];
            for (int c = 0; c < 3; c++) {
                double b = sc->bg[c] * lit * (1 - t->dark[i]);
                double nz = (urand(&seed) + urand(&seed) + urand(&seed) - 1.5) * 2 * sc->noise;
                double p = a * t->fg[i * 3 + c] + (1 - a) * b + nz;
                t->px[i * 3 + c] = (unsigned char)lround(fmin(fmax(p, 0), 255));
            }
        }
}

/* The photo through a JPEG encode and decode at quality q, in place. */
static void jpeg_roundtrip(unsigned char *px, int q)
{
    size_t n = (size_t)W * H;
    VipsImage *im = vips_image_new_from_memory_copy(px, n * 3, W, H, 3, VIPS_FORMAT_UCHAR), *back;
    void *jpg;
    size_t len;
    cr_assert_eq(vips_jpegsave_buffer(im, &jpg, &len, "Q", q, NULL), 0);
    back = vips_image_new_from_buffer(jpg, len, "", NULL);
    cr_assert_not_null(back);
    size_t sz;
    unsigned char *dec = vips_image_write_to_memory(back, &sz);
    cr_assert_eq(sz, n * 3);
    memcpy(px, dec, n * 3);
    g_free(dec);
    g_free(jpg);
    g_object_unref(back);
    g_object_unref(im);
}

/* The scene's photo and its truth, into t (release with truth_free). */
static void make_scene(const scene *sc, truth *t)
{
    size_t n = (size_t)W * H;
    t->px = xmalloc(n * 3);
    t->alpha = xcalloc(n, sizeof *t->alpha);
    t->fg = xcalloc(n * 3, sizeof *t->fg);
    t->dark = xcalloc(n, sizeof *t->dark);
    t->strap = xcalloc(n, 1);
    float *cover = xcalloc(n, sizeof *cover);
    draw_shapes(sc, t, cover);
    float *sh = cast_shadow(cover);
    compose(sc, sh, t);
    free(sh);
    free(cover);
    if (sc->jpeg_q) jpeg_roundtrip(t->px, sc->jpeg_q);
}

static void truth_free(truth *t)
{
    free(t->px);
    free(t->alpha);
    free(t->fg);
    free(t->dark);
    free(t->strap);
}

typedef struct figures {
    double iou, edge_err, shadow_alpha, shadow_px_share, rim_black, rim_vivid, interior_err,
        strap_iou;
} figures;

/* Runs the matte on the scene and measures it against the truth. */
static figures measure(const char *name, const scene *sc)
{
    truth t;
    make_scene(sc, &t);
    size_t n = (size_t)W * H;
    float *a = xcalloc(n, sizeof *a);
    unsigned char *px = xmalloc(n * 3);
    memcpy(px, t.px, n * 3);
    matte_info info;
    int rc = matte_compute(px, W, H, 3, a, &info);
    cr_assert_eq(rc, MATTE_OK, "%s: matte_compute %d", name, rc);
    figures f = {0};
    size_t inter = 0, uni = 0, sin = 0, suni = 0, edge = 0, shadow = 0, shadow_left = 0, rim = 0,
           interior = 0;
    double eerr = 0, salpha = 0, rb = 0, rv = 0, ie = 0;
    static const double black[3] = {0, 0, 0}, vivid[3] = {20, 200, 60};
    for (int y = 1; y < H - 1; y++)
        for (int x = 1; x < W - 1; x++) {
            size_t i = (size_t)y * W + x;
            bool tf = t.alpha[i] >= 0.5f, mf = a[i] >= 0.5f;
            inter += tf && mf;
            uni += tf || mf;
            if (t.strap[i] || (a[i] > 0 && t.strap[i])) {
                sin += tf && mf;
                suni += tf || mf;
            }
            bool is_edge = t.alpha[i] > 0.01f && t.alpha[i] < 0.99f;
            for (int k = 0; k < 4 && !is_edge; k++) {
                size_t q = i + (k == 0) - (k == 1) + (size_t)W * ((k == 2) - (k == 3));
                is_edge = (t.alpha[q] >= 0.5f) != tf;
            }
            if (is_edge) {
                edge++;
                eerr += fabs(a[i] - t.alpha[i]);
            }
            if (t.dark[i] > 0.04f && t.alpha[i] == 0) {
                shadow++;
                salpha += a[i];
                shadow_left += a[i] > 0.1f;
            }
            /* Colour: the cut-out over a backdrop against the truth over it. */
            if (is_edge || t.alpha[i] > 0) {
                double eb = 0, ev = 0;
                for (int c = 0; c < 3; c++) {
                    double m = px[i * 3 + c], tr = t.fg[i * 3 + c];
                    eb += fabs((a[i] * m + (1 - a[i]) * black[c]) -
                               (t.alpha[i] * tr + (1 - t.alpha[i]) * black[c]));
                    ev += fabs((a[i] * m + (1 - a[i]) * vivid[c]) -
                               (t.alpha[i] * tr + (1 - t.alpha[i]) * vivid[c]));
                }
                if (is_edge) {
                    rb += eb / 3;
                    rv += ev / 3;
                    rim++;
                } else if (t.alpha[i] >= 1) {
                    ie += eb / 3;
                    interior++;
                }
            }
        }
    f.iou = uni ? (double)inter / uni : 0;
    f.strap_iou = suni ? (double)sin / suni : 1;
    f.edge_err = edge ? eerr / edge : 0;
    f.shadow_alpha = shadow ? salpha / shadow : 0;
    f.shadow_px_share = shadow ? (double)shadow_left / shadow : 0;
    f.rim_black = rim ? rb / rim : 0;
    f.rim_vivid = rim ? rv / rim : 0;
    f.interior_err = interior ? ie / interior : 0;
    fprintf(stderr,
            "matte %-14s IoU %.4f  strap IoU %.3f  edge |Δα| %.3f  shadow α %.4f (%.2f%% px > .1)"
            "  edge colour err %.1f (black) %.1f (green)  interior %.1f  noise %.1f\n",
            name, f.iou, f.strap_iou, f.edge_err, f.shadow_alpha, 100 * f.shadow_px_share,
            f.rim_black, f.rim_vivid, f.interior_err, info.noise);
    if (getenv("MATTE_DUMP")) {
        /* The cut-out over green, for a look. */
        unsigned char *o = xmalloc(n * 3);
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < 3; c++)
                o[i * 3 + c] = (unsigned char)lround(a[i] * px[i * 3 + c] + (1 - a[i]) * vivid[c]);
        VipsImage *im = vips_image_new_from_memory(o, n * 3, W, H, 3, VIPS_FORMAT_UCHAR);
        VipsImage *src = vips_image_new_from_memory(t.px, n * 3, W, H, 3, VIPS_FORMAT_UCHAR);
        char *p1 = xasprintf("%s/matte_%s.png", getenv("MATTE_DUMP"), name);
        char *p2 = xasprintf("%s/matte_%s_src.png", getenv("MATTE_DUMP"), name);
        vips_image_write_to_file(im, p1, NULL);
        vips_image_write_to_file(src, p2, NULL);
        g_object_unref(im);
        g_object_unref(src);
        free(p1);
        free(p2);
        free(o);
    }
    free(a);
    free(px);
    truth_free(&t);
    return f;
}

static void init(void)
{
    cr_assert_eq(VIPS_INIT("test_matte"), 0);
}

TestSuite(matte, .init = init);

Test(matte, navy_on_off_white_with_shadow)
{
    scene sc = {.bg = {240, 237, 230},
                .grad = 0.07,
                .vignette = 0.10,
                .shadow = 0.35,
                .body = {36, 52, 104},
                .strap = {150, 30, 40},
                .disc = {236, 232, 222},
                .noise = 2.5,
                .jpeg_q = 85};
    figures f = measure("navy", &sc);
    cr_expect_geq(f.iou, 0.985, "IoU %.4f", f.iou);
    cr_expect_geq(f.strap_iou, 0.6, "strap IoU %.3f", f.strap_iou);
    cr_expect_leq(f.edge_err, 0.15, "edge error %.3f", f.edge_err);
    cr_expect_leq(f.shadow_alpha, 0.01, "shadow alpha %.4f", f.shadow_alpha);
    cr_expect_leq(f.rim_black, 14, "edge colour error on black %.1f", f.rim_black);
    cr_expect_leq(f.rim_vivid, 14, "edge colour error on green %.1f", f.rim_vivid);
    cr_expect_leq(f.interior_err, 6, "interior colour error %.1f", f.interior_err);
}

Test(matte, grey_product_keeps_its_body_not_its_shadow)
{
    /* A neutral dark grey product is the background's hue, darker — like
     * its shadow, but darker than any shadow (matte.c takes no pixel below
     * 45% of the background's light for a shadow), and its edges are
     * steps. (A mid grey that matches its own shadow where they touch is
     * beyond this matte: there is no cue left there.) */
    scene sc = {.bg = {236, 236, 234},
                .grad = 0.05,
                .vignette = 0.08,
                .shadow = 0.40,
                .body = {84, 84, 82},
                .strap = {90, 90, 90},
                .disc = {200, 200, 198},
                .noise = 2.0,
                .jpeg_q = 85};
    figures f = measure("grey", &sc);
    cr_expect_geq(f.iou, 0.97, "IoU %.4f", f.iou);
    cr_expect_leq(f.shadow_alpha, 0.02, "shadow alpha %.4f", f.shadow_alpha);
    cr_expect_leq(f.edge_err, 0.18, "edge error %.3f", f.edge_err);
}

Test(matte, white_on_light)
{
    scene sc = {.bg = {226, 225, 222},
                .grad = 0.04,
                .vignette = 0.06,
                .shadow = 0.25,
                .body = {252, 252, 250},
                .strap = {246, 246, 244},
                .disc = {250, 244, 236},
                .noise = 1.5,
                .jpeg_q = 90};
    figures f = measure("white-on-light", &sc);
    cr_expect_geq(f.iou, 0.95, "IoU %.4f", f.iou);
    cr_expect_leq(f.shadow_alpha, 0.03, "shadow alpha %.4f", f.shadow_alpha);
    cr_expect_leq(f.rim_black, 20, "edge colour error on black %.1f", f.rim_black);
}

Test(matte, dark_on_dark)
{
    scene sc = {.bg = {58, 58, 62},
                .grad = 0.05,
                .vignette = 0.10,
                .shadow = 0.0,
                .body = {20, 20, 24},
                .strap = {30, 24, 22},
                .disc = {90, 30, 30},
                .noise = 1.5,
                .jpeg_q = 90};
    figures f = measure("dark-on-dark", &sc);
    cr_expect_geq(f.iou, 0.95, "IoU %.4f", f.iou);
    cr_expect_leq(f.rim_vivid, 16, "edge colour error on green %.1f", f.rim_vivid);
}

Test(matte, busy_photo_is_not_plain)
{
    size_t n = (size_t)W * H;
    unsigned char *px = xmalloc(n * 3);
    uint64_t s = 7;
    for (size_t i = 0; i < n * 3; i++)
        px[i] = (unsigned char)(urand(&s) * 255);
    float *a = xcalloc(n, sizeof *a);
    cr_expect_eq(matte_compute(px, W, H, 3, a, NULL), MATTE_ENOTPLAIN);
    memset(px, 200, n * 3);
    cr_expect_eq(matte_compute(px, W, H, 3, a, NULL), MATTE_ENOTHING);
    free(px);
    free(a);
}
