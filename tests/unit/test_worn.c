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

#include "provider.h"
#include "util.h"

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

/* The person photo, PW×PH, as a JPEG. */
static provider_image person_photo(void)
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
            if (((x >= 172 && x < 200) || (x >= 400 && x < 428)) && y >= 250 && y < 440)
                paint(p, skin, 1);
            if (in_top(x, y)) paint(p, cream, body_light(x, y));
            if (((x >= 225 && x < 296) || (x >= 304 && x < 375)) && y >= 430 && y < 740)
                paint(p, trousers, 1);
            if (((x >= 215 && x < 296) || (x >= 304 && x < 385)) && y >= 740 && y < 762)
                paint(p, shoes, 1);
        }
    provider_image img = encode_jpeg(px);
    free(px);
    return img;
}

static provider_image load_fixture(const char *name)
{
    const char *dir = getenv("FIXTURES") ? getenv("FIXTURES") : "tests/fixtures";
    char *path = xasprintf("%s/%s", dir, name);
    buf b = {0};
    cr_assert_eq(util_read_file(path, 32 << 20, &b), 0, "cannot read %s", path);
    free(path);
    provider_image img = {.data = (unsigned char *)b.data, .len = b.len};
    return img;
}

/* Renders the tee on the person (3:4, low: 768×1024, the photo scaled by
 * 1.28) and decodes it; the caller g_frees. */
static unsigned char *render_worn(const char *style, int *w, int *h)
{
    provider_image person = person_photo(), tee = load_fixture("product.jpg");
    gen_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "local-studio");
    snprintf(p.style, sizeof p.style, "%s", style);
    snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "3:4");
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
