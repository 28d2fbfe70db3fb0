/*
 * contact_sheet — one picture of local-studio's output for every style ×
 * product kind × without / with a model photo, to look at before calling
 * the compositor done (issue 10).
 *
 *   make contact-sheet        → build/contact-sheet.png (and one PNG per row)
 *   CONTACT_FULL=dir make contact-sheet   also each render at full size
 *
 * Rows, top to bottom: top (tests/fixtures/product.jpg), hat
 * (product2.png), and four product photos drawn here on a light studio
 * background, like the fixtures: a dress, trousers, shoes (a pair of
 * sneakers) and a bag (an accessory). Columns, left to right: realistic,
 * artistic, minimal without a model, then the same three on
 * tests/fixtures/model.jpg. Each tile is a 3:4 low-quality render (768×1024)
 * shrunk to 240×320; seed 42, variant 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "provider.h"
#include "util.h"

#define PS 800 /* product photo side */
#define SS 3   /* supersampling of the drawn shapes */
#define TW 240
#define TH 320

typedef struct pt {
    double x, y;
} pt;

/* Even-odd point in polygon. */
static bool in_poly(const pt *p, int n, double x, double y)
{
    bool in = false;
    for (int i = 0, j = n - 1; i < n; j = i++)
        if ((p[i].y > y) != (p[j].y > y) &&
            x < (p[j].x - p[i].x) * (y - p[i].y) / (p[j].y - p[i].y) + p[i].x)
            in = !in;
    return in;
}

/* A drawn product: up to 4 polygons, each with its colour, later ones on
 * top; a ring (centre, radii) for a bag's handle. */
typedef struct shape {
    pt poly[4][16];
    int n[4];
    unsigned char col[4][3];
    int npoly;
    double ring_cx, ring_cy, ring_r0, ring_r1; /* ring_r1 0: none */
    unsigned char ring_col[3];
} shape;

/* The colour of the shape at (x, y), false where it is not. */
static bool shape_at(const shape *s, double x, double y, unsigned char out[3])
{
    bool hit = false;
    for (int k = 0; k < s->npoly; k++)
        if (in_poly(s->poly[k], s->n[k], x, y)) {
            memcpy(out, s->col[k], 3);
            hit = true;
        }
    if (!hit && s->ring_r1 > 0) {
        double d = hypot(x - s->ring_cx, y - s->ring_cy);
        if (d >= s->ring_r0 && d <= s->ring_r1 && y <= s->ring_cy) {
            memcpy(out, s->ring_col, 3);
            hit = true;
        }
    }
    return hit;
}

/* The shape on a light grey background with noise, as a JPEG. */
static provider_image draw_photo(const shape *s)
{
    unsigned char *px = xmalloc((size_t)PS * PS * 3);
    uint64_t seed = 99;
    for (int y = 0; y < PS; y++)
        for (int x = 0; x < PS; x++) {
            double acc[3] = {0, 0, 0};
            for (int sy = 0; sy < SS; sy++)
                for (int sx = 0; sx < SS; sx++) {
                    unsigned char c[3] = {236, 236, 233};
                    shape_at(s, x + (sx + 0.5) / SS, y + (sy + 0.5) / SS, c);
                    for (int k = 0; k < 3; k++)
                        acc[k] += c[k];
                }
            for (int k = 0; k < 3; k++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                double nz = ((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 4;
                px[((size_t)y * PS + x) * 3 + k] =
                    (unsigned char)lround(fmin(255, fmax(0, acc[k] / (SS * SS) + nz)));
            }
        }
    VipsImage *im =
        vips_image_new_from_memory(px, (size_t)PS * PS * 3, PS, PS, 3, VIPS_FORMAT_UCHAR);
    void *data = NULL;
    size_t len = 0;
    if (vips_jpegsave_buffer(im, &data, &len, "Q", 90, NULL)) {
        fprintf(stderr, "contact_sheet: %s\n", vips_error_buffer());
        exit(1);
    }
    g_object_unref(im);
    free(px);
    return (provider_image){.data = data, .len = len};
}

static void add_poly(shape *s, const unsigned char col[3], const pt *p, int n)
{
    memcpy(s->poly[s->npoly], p, (size_t)n * sizeof *p);
    s->n[s->npoly] = n;
    memcpy(s->col[s->npoly], col, 3);
    s->npoly++;
}

static provider_image dress_photo(void)
{
    static const unsigned char wine[3] = {128, 28, 52}, band[3] = {96, 20, 40};
    static const pt d[] = {{340, 90},  {360, 90},  {372, 180}, {428, 180}, {440, 90},  {460, 90},
                           {470, 200}, {455, 330}, {560, 720}, {240, 720}, {345, 330}, {330, 200}};
    static const pt waist[] = {{347, 320}, {453, 320}, {457, 345}, {343, 345}};
    shape s = {0};
    add_poly(&s, wine, d, 12);
    add_poly(&s, band, waist, 4);
    return draw_photo(&s);
}

static provider_image trousers_photo(void)
{
    static const unsigned char khaki[3] = {176, 146, 96}, belt[3] = {120, 96, 60};
    static const pt t[] = {{290, 90},  {510, 90},  {530, 720}, {420, 720},
                           {400, 300}, {380, 720}, {270, 720}};
    static const pt b[] = {{290, 90}, {510, 90}, {512, 120}, {288, 120}};
    shape s = {0};
    add_poly(&s, khaki, t, 7);
    add_poly(&s, belt, b, 4);
    return draw_photo(&s);
}

static provider_image shoes_photo(void)
{
    static const unsigned char blue[3] = {40, 80, 170}, sole[3] = {246, 246, 244};
    static const pt l[] = {{120, 330}, {200, 310}, {250, 360}, {370, 400}, {390, 450}, {110, 450}};
    static const pt ls[] = {{105, 440}, {395, 440}, {395, 470}, {105, 470}};
    static const pt r[] = {{420, 330}, {500, 310}, {550, 360}, {670, 400}, {690, 450}, {410, 450}};
    static const pt rs[] = {{405, 440}, {695, 440}, {695, 470}, {405, 470}};
    shape s = {0};
    add_poly(&s, blue, l, 6);
    add_poly(&s, sole, ls, 4);
    add_poly(&s, blue, r, 6);
    add_poly(&s, sole, rs, 4);
    return draw_photo(&s);
}

static provider_image bag_photo(void)
{
    static const unsigned char tan[3] = {156, 98, 58}, flap[3] = {130, 80, 46};
    static const pt b[] = {{230, 330}, {570, 330}, {600, 650}, {200, 650}};
    static const pt f[] = {{230, 330}, {570, 330}, {560, 430}, {240, 430}};
    shape s = {0};
    add_poly(&s, tan, b, 4);
    add_poly(&s, flap, f, 4);
    s.ring_cx = 400, s.ring_cy = 335, s.ring_r0 = 110, s.ring_r1 = 132;
    memcpy(s.ring_col, flap, 3);
    return draw_photo(&s);
}

static provider_image load(const char *name)
{
    char *path = xasprintf("tests/fixtures/%s", name);
    buf b = {0};
    if (util_read_file(path, 32 << 20, &b)) {
        fprintf(stderr, "contact_sheet: cannot read %s\n", path);
        exit(1);
    }
    free(path);
    return (provider_image){.data = (unsigned char *)b.data, .len = b.len};
}

/* One tile: the render shrunk to TW×TH (caller unrefs). With
 * CONTACT_FULL=dir in the environment the full-size render is written
 * there too, as <name>.png, for a closer look. */
static VipsImage *tile(const provider_image *prod, const provider_image *model, const char *style,
                       const char *name)
{
    gen_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "local-studio");
    snprintf(p.style, sizeof p.style, "%s", style);
    snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "3:4");
    snprintf(p.quality, sizeof p.quality, "low");
    p.seed = 42;
    provider_image out = {0};
    char *err = NULL;
    if (provider_local_render(&p, NULL, prod, 1, model, model ? 1 : 0, 0, NULL, NULL, NULL, &out,
                              &err) != PROVIDER_OK) {
        fprintf(stderr, "contact_sheet: %s: %s\n", style, err ? err : "?");
        exit(1);
    }
    const char *full = getenv("CONTACT_FULL");
    if (full) {
        char *path = xasprintf("%s/%s-%s%s.png", full, name, style, model ? "-model" : "");
        VipsImage *fi = vips_image_new_from_buffer(out.data, out.len, "", NULL);
        if (!fi || vips_image_write_to_file(fi, path, NULL)) {
            fprintf(stderr, "contact_sheet: %s\n", vips_error_buffer());
            exit(1);
        }
        g_object_unref(fi);
        free(path);
    }
    VipsImage *im = NULL;
    if (vips_thumbnail_buffer(out.data, out.len, &im, TW, "height", TH, NULL)) {
        fprintf(stderr, "contact_sheet: %s\n", vips_error_buffer());
        exit(1);
    }
    VipsImage *mem = vips_image_copy_memory(im);
    g_object_unref(im);
    provider_image_free(&out);
    return mem;
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0])) return 1;
    const char *out = argc > 1 ? argv[1] : "build/contact-sheet.png";
    static const char *kinds[] = {"top", "hat", "dress", "trousers", "shoes", "bag"};
    static const char *styles[] = {"realistic", "artistic", "minimal"};
    provider_image prods[6] = {load("product.jpg"), load("product2.png"), dress_photo(),
                               trousers_photo(),    shoes_photo(),        bag_photo()};
    provider_image model = load("model.jpg");
    VipsImage *tiles[6 * 6], *rows[6], *sheet;
    for (int k = 0; k < 6; k++) {
        for (int c = 0; c < 6; c++)
            tiles[k * 6 + c] = tile(&prods[k], c < 3 ? NULL : &model, styles[c % 3], kinds[k]);
        if (vips_arrayjoin(tiles + k * 6, &rows[k], 6, "shim", 4, NULL)) return 1;
        char *path = xasprintf("%.*s-%s.png", (int)(strlen(out) - 4), out, kinds[k]);
        vips_image_write_to_file(rows[k], path, NULL);
        printf("%s\n", path);
        free(path);
    }
    if (vips_arrayjoin(rows, &sheet, 6, "across", 1, "shim", 4, NULL) ||
        vips_image_write_to_file(sheet, out, NULL)) {
        fprintf(stderr, "contact_sheet: %s\n", vips_error_buffer());
        return 1;
    }
    printf("%s: rows %s, %s, %s, %s, %s, %s; columns realistic, artistic, minimal, then the same "
           "on model.jpg\n",
           out, kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5]);
    for (int i = 0; i < 36; i++)
        g_object_unref(tiles[i]);
    for (int k = 0; k < 6; k++) {
        g_object_unref(rows[k]);
        free(prods[k].data);
    }
    g_object_unref(sheet);
    free(model.data);
    return 0;
}
