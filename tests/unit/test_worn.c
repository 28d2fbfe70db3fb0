/*
 * Unit tests for wearing a product on the model (placement.c,
 * provider_local_worn.c) against a person photo the test constructs with a
 * known geometry and a known light: a head, a cream top with sloping
 * shoulders and a crew neck, shaded like a lit cylinder (light from the
 * viewer's left, darker towards the hem), arms, trousers, shoes, on a grey
 * studio gradient. The product is the navy T-shirt fixture. Measured: the
 * share of the model's own top still showing inside the torso band, and
 * how the garment's luminance follows the body's shading (Pearson r and
 * the slope). The figures are printed; WORN_DUMP=DIR writes the renders.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "placement.h"
#include "provider.h"
#include "provider_local.h"
#include "util.h"

#include "image_fixture.h"

#define PW 600
#define PH 800

static const unsigned char skin[3] = {205, 160, 130}, cream[3] = {234, 226, 212};

/* The light on the model's top at photo pixel (x, y): a cylinder lit from
 * the left (brightest at x 280, 0.72 at the right side), 15% darker
 * towards the hem. */
static double body_light(double x, double y)
{
    double t = (x - 280) / 115 * M_PI / 2;
    double across = 0.70 + 0.30 * cos(fmin(fabs(t), M_PI / 2));
    return across * (1 - 0.15 * fmax(0, y - 200) / 230);
}

/* In the model's own top: shoulders sloping from a crew neck under the
 * chin (y 186, open 20 px either side of the centre down to y 196) to the
 * shoulder points (y 250, 195..405), the body straight down to the hips
 * (y 430). A flat-laid tee's shoulders slope less: placed from the
 * shoulder line, it leaves the top's upper shoulders showing. */
static bool in_top(int x, int y)
{
    if (y < 186 || y >= 430 || (abs(x - 300) < 20 && y < 196)) return false;
    double half = y < 250 ? 40 + (y - 186) * 65.0 / 64 : 105;
    return fabs(x + 0.5 - 300) < half;
}

static void paint(unsigned char *p, const unsigned char c[3], double k)
{
    for (int i = 0; i < 3; i++)
        p[i] = (unsigned char)lround(fmin(255, c[i] * k));
}

static provider_image encode_jpeg(unsigned char *px)
{
    VipsImage *im =
        vips_image_new_from_memory(px, (size_t)PW * PH * 3, PW, PH, 3, VIPS_FORMAT_UCHAR);
    void *data;
    size_t len;
    cr_assert_eq(vips_jpegsave_buffer(im, &data, &len, "Q", 92, NULL), 0);
    g_object_unref(im);
    provider_image img = {.data = data, .len = len};
    return img;
}

/* The person's pixels, PW×PH×3 (caller frees); hands_on_hips: the arms
 * (x 167..191 and 409..433) hang with a slit of 4 px of backdrop beside
 * the top (x 195..405 below its shoulders) and the hands below them touch
 * the hips (x 191..225 and 375..409, y 430..480). The hips (the trousers)
 * are x 225..375: 150 px; the legs' gap x 296..304. */
static unsigned char *person_pixels(bool hands_on_hips)
{
    static const unsigned char trousers[3] = {52, 56, 66}, shoes[3] = {20, 20, 22};
    unsigned char *px = xmalloc((size_t)PW * PH * 3);
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            unsigned char *p = px + ((size_t)y * PW + x) * 3;
            int g = 190 - y * 50 / PH;
            p[0] = (unsigned char)g, p[1] = (unsigned char)(g + 4), p[2] = (unsigned char)(g + 12);
            double dx = x - 300, dy = y - 130;
            if (dx * dx + dy * dy < 50 * 50) paint(p, skin, 1);
            if (x >= 285 && x < 315 && y >= 175 && y < 205) paint(p, skin, 1);
            int ax = hands_on_hips ? 5 : 0; /* a slit between the arms and the top */
            if (((x >= 172 - ax && x < 200 - ax - 4 * (ax > 0)) ||
                 (x >= 400 + ax + 4 * (ax > 0) && x < 428 + ax)) &&
                y >= 250 && y < 440)
                paint(p, skin, 1);
            if (hands_on_hips && ((x >= 191 && x < 225) || (x >= 375 && x < 409)) && y >= 430 &&
                y < 480)
                paint(p, skin, 1);
            if (in_top(x, y)) paint(p, cream, body_light(x, y));
            if (((x >= 225 && x < 296) || (x >= 304 && x < 375)) && y >= 430 && y < 740)
                paint(p, trousers, 1);
            if (((x >= 215 && x < 296) || (x >= 304 && x < 385)) && y >= 740 && y < 762)
                paint(p, shoes, 1);
        }
    return px;
}

/* The person photo as a JPEG. */
static provider_image person_photo_with(bool hands_on_hips)
{
    unsigned char *px = person_pixels(hands_on_hips);
    provider_image img = encode_jpeg(px);
    free(px);
    return img;
}

static provider_image person_photo(void)
{
    return person_photo_with(false);
}

/* A strappy wine dress (two straps, a narrow bodice, a skirt flaring from
 * the waist) on an off-white background, as a JPEG of PW×PH. */
static provider_image dress_photo(void)
{
    static const unsigned char wine[3] = {128, 28, 52};
    unsigned char *px = xmalloc((size_t)PW * PH * 3);
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            unsigned char *p = px + ((size_t)y * PW + x) * 3;
            p[0] = 236, p[1] = 236, p[2] = 233;
            double dx = fabs(x - 300.0);
            bool strap = y >= 80 && y < 170 && dx >= 40 && dx < 55;
            bool bodice = y >= 170 && y < 330 && dx < 60;
            bool skirt = y >= 330 && y < 720 && dx < 60 + (y - 330) * 0.4;
            if (strap || bodice || skirt) paint(p, wine, 1);
        }
    provider_image img = encode_jpeg(px);
    free(px);
    return img;
}

/* A pair of khaki trousers (a waistband, two legs) on an off-white
 * background, as a JPEG of PW×PH. */
static provider_image trousers_photo(void)
{
    unsigned char *px = xmalloc((size_t)PW * PH * 3);
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            unsigned char *p = px + ((size_t)y * PW + x) * 3;
            p[0] = 236, p[1] = 236, p[2] = 233;
            double t = (y - 100) / 600.0, half = 100 + 20 * t;
            bool in = y >= 100 && y < 700 && fabs(x - 300.0) < half;
            if (in && y > 300 && fabs(x - 300.0) < 12 + 8 * (y - 300) / 400.0) in = false;
            if (in) {
                static const unsigned char khaki[3] = {176, 146, 96}, belt[3] = {120, 96, 60};
                paint(p, y < 125 ? belt : khaki, 1);
            }
        }
    provider_image img = encode_jpeg(px);
    free(px);
    return img;
}

/* Renders a product (the tee) on a person photo (3:4, low: 768×1024, the
 * photo scaled by 1.28; or another aspect) and decodes it; takes both
 * images; the caller g_frees the pixels. */
static unsigned char *render_on(provider_image person, provider_image tee, const char *style,
                                const char *aspect, int *w, int *h)
{
    gen_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "local-studio");
    snprintf(p.style, sizeof p.style, "%s", style);
    snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "%s", aspect);
    snprintf(p.quality, sizeof p.quality, "low");
    p.seed = 3;
    provider_image out = {0};
    char *err = NULL;
    int rc = provider_local_render(&p, NULL, &tee, 1, &person, 1, 0, NULL, NULL, NULL, &out, &err);
    cr_assert_eq(rc, PROVIDER_OK, "%s", err ? err : "");
    VipsImage *im = vips_image_new_from_buffer(out.data, out.len, "", NULL);
    cr_assert_not_null(im);
    if (getenv("WORN_DUMP")) {
        /* The render and the photo, for a look. */
        char *p1 = xasprintf("%s/worn_%s.png", getenv("WORN_DUMP"), style);
        char *p2 = xasprintf("%s/worn_person.jpg", getenv("WORN_DUMP"));
        vips_image_write_to_file(im, p1, NULL);
        FILE *f = fopen(p2, "wb");
        if (f) {
            fwrite(person.data, 1, person.len, f);
            fclose(f);
        }
        free(p1);
        free(p2);
    }
    cr_assert_eq(im->Bands, 3);
    size_t size;
    unsigned char *px = vips_image_write_to_memory(im, &size);
    *w = im->Xsize;
    *h = im->Ysize;
    g_object_unref(im);
    provider_image_free(&out);
    free(person.data);
    free(tee.data);
    return px;
}

static unsigned char *render_worn_at(const char *style, const char *aspect, int *w, int *h)
{
    return render_on(person_photo(), load_fixture("product.jpg"), style, aspect, w, h);
}

static unsigned char *render_worn(const char *style, int *w, int *h)
{
    return render_worn_at(style, "3:4", w, h);
}

static bool cream_like(const unsigned char *q)
{
    return q[0] > 120 && q[0] > q[2] + 8 && q[1] > 0.88 * q[0] && q[1] < 1.02 * q[0];
}

static bool navy_like(const unsigned char *q)
{
    return q[2] > q[0] + 20 && q[0] < 120;
}

static void init(void)
{
    cr_assert_eq(VIPS_INIT("test_worn"), 0);
}

TestSuite(worn, .init = init);

Test(worn, garment_covers_the_models_top)
{
    int w, h;
    unsigned char *px = render_worn("realistic", &w, &h);
    cr_assert(w == 768 && h == 1024);
    double k = 768.0 / PW;
    /* The torso band: the model's own top, shoulders and sleeves included. */
    size_t band = 0, showing = 0, shoulders = 0, shoulders_showing = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int X = (int)(x / k), Y = (int)(y / k);
            if (!in_top(X, Y)) continue;
            const unsigned char *q = px + ((size_t)y * w + x) * 3;
            band++;
            showing += cream_like(q);
            if (Y < 250) {
                shoulders++;
                shoulders_showing += cream_like(q);
            }
        }
    /* The collar: the model's top in the rows just below the neck and
     * beside it (photo x 270..330, y 186..212), where a light line of it
     * can stay between the skin and the tee's neckline. */
    size_t collar = 0, collar_showing = 0;
    for (int y = (int)(186 * k); y < (int)(212 * k); y++)
        for (int x = (int)(270 * k); x < (int)(330 * k); x++) {
            if (!in_top((int)(x / k), (int)(y / k))) continue;
            collar++;
            collar_showing += cream_like(px + ((size_t)y * w + x) * 3);
        }
    fprintf(stderr, "worn: the model's top still showing at the collar: %zu of %zu px\n",
            collar_showing, collar);
    cr_expect_lt(collar_showing, collar / 50 + 1, "%zu collar pixels of the model's top",
                 collar_showing);
    double share = (double)showing / band, sshare = (double)shoulders_showing / shoulders;
    fprintf(stderr,
            "worn: model's own top still showing: %.2f%% of the torso band (%zu of %zu px), "
            "%.2f%% of the shoulder rows\n",
            100 * share, showing, band, 100 * sshare);
    cr_expect_lt(share, 0.02, "%.2f%% of the model's top still shows", 100 * share);
    cr_expect_lt(sshare, 0.03, "%.2f%% of the shoulders still show", 100 * sshare);
    g_free(px);
}

Test(worn, garment_takes_the_bodys_light)
{
    int w, h;
    unsigned char *px = render_worn("realistic", &w, &h);
    double k = 768.0 / PW;
    /* The tee's plain navy over the body (not its print, not beyond the
     * model's top): its luminance against the light painted on the body. */
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    size_t n = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double X = x / k, Y = y / k;
            if (!(X >= 200 && X < 400 && Y >= 255 && Y < 415)) continue;
            const unsigned char *q = px + ((size_t)y * w + x) * 3;
            if (!navy_like(q)) continue;
            double L = 0.2126 * q[0] + 0.7152 * q[1] + 0.0722 * q[2], s = body_light(X, Y);
            sx += s, sy += L, sxx += s * s, syy += L * L, sxy += s * L;
            n++;
        }
    cr_assert_gt(n, 10000, "only %zu navy pixels over the body", n);
    double vs = sxx / n - (sx / n) * (sx / n), vl = syy / n - (sy / n) * (sy / n);
    double cov = sxy / n - (sx / n) * (sy / n);
    double r = cov / sqrt(vs * vl);
    /* The slope relative to the mean: 1 would be the body's full light. */
    double rel_slope = cov / vs / (sy / n) * (sx / n);
    fprintf(stderr,
            "worn: garment luminance vs the body's shading: Pearson r %.3f, relative slope %.2f "
            "over %zu px (light %.2f..1, garment mean L %.1f)\n",
            r, rel_slope, n, 0.72 * 0.85, sy / n);
    cr_expect_gt(r, 0.8, "garment luminance does not follow the body's light (r %.3f)", r);
    cr_expect(rel_slope > 0.5 && rel_slope < 1.2, "relative slope %.2f", rel_slope);
    g_free(px);
}

/* The mean colour of the backdrop: the strips left and right of the
 * person (the photo's x < 120 and x ≥ 480, above the floor). */
static void backdrop_mean(const unsigned char *px, int w, int h, double mean[3], size_t *n_off)
{
    double k = (double)w / PW, s[3] = {0, 0, 0};
    size_t n = 0, off = 0;
    for (int y = 0; y < h * 85 / 100; y++)
        for (int x = 0; x < w; x++) {
            if (x >= 120 * k && x < 480 * k) continue;
            const unsigned char *q = px + ((size_t)y * w + x) * 3;
            for (int c = 0; c < 3; c++)
                s[c] += q[c];
            off += q[0] != 255 || q[1] != 255 || q[2] != 255;
            n++;
        }
    for (int c = 0; c < 3; c++)
        mean[c] = s[c] / n;
    *n_off = off;
}

/* The chromaticity of the tee's navy just below the print. */
static void chest_chroma(const unsigned char *px, int w, double ch[3])
{
    double k = (double)w / PW, s[3] = {0, 0, 0};
    for (int y = (int)(345 * k); y < (int)(375 * k); y++)
        for (int x = (int)(250 * k); x < (int)(280 * k); x++)
            for (int c = 0; c < 3; c++)
                s[c] += px[((size_t)y * w + x) * 3 + c];
    double sum = s[0] + s[1] + s[2];
    for (int c = 0; c < 3; c++)
        ch[c] = s[c] / sum;
}

Test(worn, styles_differ_on_a_model_photo)
{
    static const char *styles[] = {"minimal", "realistic", "artistic"};
    double mean[3][3], chroma[3][3];
    for (int s = 0; s < 3; s++) {
        int w, h;
        unsigned char *px = render_worn(styles[s], &w, &h);
        size_t off;
        backdrop_mean(px, w, h, mean[s], &off);
        chest_chroma(px, w, chroma[s]);
        fprintf(stderr, "worn %-9s backdrop mean %5.1f %5.1f %5.1f  tee chroma %.3f %.3f %.3f\n",
                styles[s], mean[s][0], mean[s][1], mean[s][2], chroma[s][0], chroma[s][1],
                chroma[s][2]);
        if (s == 0) {
            fprintf(stderr, "worn minimal: %zu backdrop pixels not #FFFFFF\n", off);
            cr_expect_eq(off, 0, "minimal: %zu backdrop pixels are not #FFFFFF", off);
        }
        /* The person is still dressed: navy at the chest. */
        const unsigned char *q = px + ((size_t)(h * 360 / PH) * w + w * 265 / PW) * 3;
        cr_expect(q[2] > q[0] + 20, "%s: chest is %d,%d,%d", styles[s], q[0], q[1], q[2]);
        g_free(px);
    }
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++) {
            double d = 0, dc = 0;
            for (int c = 0; c < 3; c++) {
                d += fabs(mean[a][c] - mean[b][c]) / 3;
                dc = fmax(dc, fabs(chroma[a][c] - chroma[b][c]));
            }
            fprintf(stderr,
                    "worn %s vs %s: backdrop differs by %.1f (mean |Δ| per channel), "
                    "tee chroma by %.4f\n",
                    styles[a], styles[b], d, dc);
            cr_expect_gt(d, 20, "%s and %s backdrops alike (%.1f)", styles[a], styles[b], d);
            cr_expect_lt(dc, 0.015, "%s and %s: the tee's colour shifts by %.4f", styles[a],
                         styles[b], dc);
        }
}

Test(worn, whole_figure_in_a_landscape_frame)
{
    /* A portrait photo in a 16:9 frame is fitted inside it (a cover crop
     * would cut it at the chest and the tee would go on the face): the
     * photo is scaled to the height (0.72) and centred. */
    int w, h;
    unsigned char *px = render_worn_at("minimal", "16:9", &w, &h);
    cr_assert(w == 1024 && h == 576);
    double k = 576.0 / PH, ox = (1024 - PW * k) / 2;
#define AT(X, Y) (px + ((size_t)lround((Y)*k) * w + (size_t)lround(ox + (X)*k)) * 3)
    const unsigned char *chest = AT(265, 360), *face = AT(300, 130), *shin = AT(260, 650);
    cr_expect(navy_like(chest), "chest is %d,%d,%d: not the tee", chest[0], chest[1], chest[2]);
    cr_expect(face[0] > 180 && face[0] > face[2] + 40, "face is %d,%d,%d: not skin", face[0],
              face[1], face[2]);
    cr_expect(shin[0] < 90, "shin is %d,%d,%d: not the trousers", shin[0], shin[1], shin[2]);
    /* The sides beyond the photo are minimal's white, not smeared edges. */
    const unsigned char *side = px + ((size_t)(h / 2) * w + 20) * 3;
    cr_expect(side[0] == 255 && side[1] == 255 && side[2] == 255, "side is %d,%d,%d", side[0],
              side[1], side[2]);
#undef AT
    g_free(px);
}

/* The person's matte from the constructed pixels: not the backdrop's
 * gradient. */
static float *person_alpha(const unsigned char *px)
{
    float *a = xmalloc((size_t)PW * PH * sizeof *a);
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            const unsigned char *p = px + ((size_t)y * PW + x) * 3;
            int g = 190 - y * 50 / PH;
            a[(size_t)y * PW + x] = (p[0] != g || p[1] != g + 4 || p[2] != g + 12) ? 1.0f : 0.0f;
        }
    return a;
}

/* With WORN_DUMP=DIR: the render px (w×h×3) as DIR/worn_<name>.png. */
static void dump(const unsigned char *px, int w, int h, const char *name)
{
    if (!getenv("WORN_DUMP")) return;
    VipsImage *im = vips_image_new_from_memory(px, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
    char *p = xasprintf("%s/worn_%s.png", getenv("WORN_DUMP"), name);
    vips_image_write_to_file(im, p, NULL);
    free(p);
    g_object_unref(im);
}

Test(worn, hips_measured_without_the_hands)
{
    for (int hands = 0; hands <= 1; hands++) {
        unsigned char *px = person_pixels(hands);
        float *a = person_alpha(px);
        placement_body b;
        cr_assert(placement_find_body(a, px, PW, PH, 1, &b));
        fprintf(stderr, "worn: hips measured %d px (true 150), hands %s\n", b.hip_w,
                hands ? "touching the hips" : "apart");
        cr_expect(b.hip_w >= 142 && b.hip_w <= 160, "hips %d px, hands %d", b.hip_w, hands);
        free(a);
        free(px);
    }
    /* model.jpg (768×1024): the hands touch a long loose top, the
     * trousers below it are x 300..470. */
    provider_image m = load_fixture("model.jpg");
    VipsImage *im = vips_image_new_from_buffer(m.data, m.len, "", NULL);
    cr_assert_not_null(im);
    size_t size;
    unsigned char *cv = vips_image_write_to_memory(im, &size);
    worn_person wp;
    cr_assert(worn_find(cv, im->Xsize, im->Ysize, &wp));
    fprintf(stderr, "worn: model.jpg hips measured %d px (trousers 170), top's hem at %d\n",
            wp.body.hip_w, wp.body.top_hem_y);
    cr_expect(wp.body.hip_w >= 160 && wp.body.hip_w <= 185, "model.jpg hips %d px", wp.body.hip_w);
    worn_free(&wp);
    g_free(cv);
    g_object_unref(im);
    free(m.data);
}

Test(worn, trousers_under_the_top_and_hip_wide)
{
    int w, h;
    unsigned char *px =
        render_on(person_photo_with(true), trousers_photo(), "minimal", "3:4", &w, &h);
    double k = 768.0 / PW;
    /* The model's top above its hem (y 380..428) stays the top: the
     * waistband goes under it. */
    size_t band = 0, cream = 0;
    for (int y = (int)(380 * k); y < (int)(426 * k); y++)
        for (int x = (int)(235 * k); x < (int)(365 * k); x++, band++)
            cream += cream_like(px + ((size_t)y * w + x) * 3);
    /* The trousers' width just below the hem against the hips (150). */
    int row = (int)(470 * k), x0 = w, x1 = -1;
    for (int x = 0; x < w; x++) {
        const unsigned char *q = px + ((size_t)row * w + x) * 3;
        if (q[0] > 130 && q[0] < 200 && q[1] > q[2] + 40) { /* khaki, not skin */
            if (x < x0) x0 = x;
            x1 = x;
        }
    }
    double ratio = (x1 - x0 + 1) / k / 150;
    /* The old backdrop left in the slits beside the top (photo x 191..195
     * and 405..409, y 300..420: pixels not minimal's white) and between the
     * trousers' legs (between their khaki runs, a pixel in from each, photo
     * y 520..700: the old backdrop's or the model's trousers' colour). */
    size_t slit = 0, slit_off = 0, gap = 0, gap_off = 0;
    for (int y = (int)(300 * k); y < (int)(420 * k); y++)
        for (int x = 0; x < w; x++) {
            double X = x / k;
            if (!((X >= 191.5 && X < 194.5) || (X >= 405.5 && X < 408.5))) continue;
            const unsigned char *q = px + ((size_t)y * w + x) * 3;
            slit++;
            slit_off += q[0] < 245 || q[1] < 245 || q[2] < 245;
        }
    for (int y = (int)(520 * k); y < (int)(700 * k); y++) {
        int l = -1, rr = -1; /* the inner edges of the two legs */
        for (int x = (int)(260 * k); x < (int)(340 * k); x++) {
            const unsigned char *q = px + ((size_t)y * w + x) * 3;
            bool kh = q[0] > 130 && q[0] < 200 && q[1] > q[2] + 40;
            if (kh && rr == -2) {
                rr = x;
                break;
            }
            if (kh) l = x;
            if (!kh && l >= 0 && x > l + 1) rr = -2;
        }
        for (int x = l + 2; rr > 0 && x < rr - 1; x++) {
            const unsigned char *q = px + ((size_t)y * w + x) * 3;
            gap++;
            /* The old backdrop is bluish grey, the model's trousers dark;
             * a garment's soft shadow is neutral and light. */
            gap_off += q[2] > q[0] + 5 || q[0] < 200;
        }
    }
    fprintf(stderr,
            "worn: old backdrop left: %zu of %zu slit px beside the top, %zu of %zu px between "
            "the trousers' legs (old backdrop or model's trousers)\n",
            slit_off, slit, gap_off, gap);
    cr_expect_lt(slit_off, slit / 20 + 1, "%zu slit pixels not white", slit_off);
    cr_expect_gt(gap, 500, "no gap between the legs found");
    cr_expect_lt(gap_off, gap / 100 + 1, "%zu gap pixels not white", gap_off);
    fprintf(stderr,
            "worn: trousers: the model's top above its hem still showing %.1f%%; trousers "
            "%.2f× the hips' width below it\n",
            100.0 * cream / band, ratio);
    cr_expect_gt((double)cream / band, 0.97, "the waistband covers the top");
    cr_expect(ratio > 1.0 && ratio < 1.2, "trousers %.2f× the hips", ratio);
    dump(px, w, h, "trousers");
    g_free(px);
}

Test(worn, strappy_dress_covers_the_top_at_the_hips)
{
    int w, h;
    unsigned char *px = render_on(person_photo(), dress_photo(), "minimal", "3:4", &w, &h);
    double k = 768.0 / PW;
    /* The model's own top in its lowest rows (y 412..430, the hips, below
     * the dress's waist). */
    size_t band = 0, showing = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int X = (int)(x / k), Y = (int)(y / k);
            if (Y < 412 || !in_top(X, Y)) continue;
            band++;
            showing += cream_like(px + ((size_t)y * w + x) * 3);
        }
    fprintf(stderr, "worn: strappy dress: the model's top still showing at the hips %.2f%%\n",
            100.0 * showing / band);
    cr_expect_lt((double)showing / band, 0.02, "%.2f%% of the top shows at the hips",
                 100.0 * showing / band);
    dump(px, w, h, "dress");
    g_free(px);
}

Test(worn, bag_held_in_the_hand)
{
    /* The constructed person's right hand: the arm x 400..428 ending at
     * y 440 (the fingertips). */
    unsigned char *px = person_pixels(false);
    float *a = person_alpha(px);
    placement_body b;
    cr_assert(placement_find_body(a, px, PW, PH, 1, &b));
    static const float bag[4] = {1, 1, 1, 1}; /* any silhouette: a 2×2 box */
    placement_rect r = placement_on_body(&b, PLACEMENT_ACCESSORY, bag, 2, 2);
    double hx = r.x + r.w / 2.0, hy = r.y;
    fprintf(stderr,
            "worn: bag: hand found at (%d, %d) (the arm x 400..428, fingertips y 440); the "
            "handle's top at (%.0f, %.0f)\n",
            b.hand_x, b.hand_y, hx, hy);
    cr_expect(hx >= 400 && hx < 428 && hy >= 405 && hy < 440, "handle at (%.0f, %.0f)", hx, hy);
    free(a);
    free(px);
}

Test(worn, bag_without_a_model_in_line_with_a_garment)
{
    /* 3:4 minimal, one product: the share of the frame a bag (aspect 1.05,
     * an accessory) takes against a tee's (aspect 1.3). */
    double share[2];
    for (int i = 0; i < 2; i++) {
        placement_req q = {.W = 768, .H = 1024, .style = 2, .n = 1, .fill = 0.5};
        q.aspect[0] = i ? 1.05 : 1.3;
        q.small[0] = i == 1;
        placement_rect r;
        double floor_y = 0.8;
        placement_arrange(&q, &r, &floor_y);
        share[i] = (double)r.w * r.h / (768.0 * 1024);
    }
    fprintf(stderr, "worn: frame share without a model: tee %.1f%%, bag %.1f%% (%.2f× the tee)\n",
            100 * share[0], 100 * share[1], share[1] / share[0]);
    cr_expect(share[1] / share[0] < 1.0, "the bag takes %.2f× the tee's share",
              share[1] / share[0]);
}
