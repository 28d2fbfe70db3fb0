/*
 * provider_local_look — the look of a local-studio picture: the style's
 * plan (palette, light, grade) steered by the custom prompt, and the
 * backdrop it paints.
 *
 *   realistic  a lit studio sweep: wall into floor, a key light, vignette;
 *              the palette is seed-picked among those that stand apart from
 *              the product, unless a setting word picks one.
 *   artistic   a graded backdrop (a duotone gradient), directional light and
 *              a spot, strong vignette; the product is never tinted (the
 *              grade is in the backdrop; only neutral light falls on it).
 *   minimal    pure #FFFFFF, exactly: no lift, no dither, no tint, whatever
 *              the prompt says (the marketplace white-background rule); the
 *              prompt can still move the light (the shadow's side).
 *
 * Prompt words (lower-cased, whole words; see look_words below): light
 * side (left, right), warmth (warm, golden, sunset, ... / cool, icy, ...),
 * settings with their palettes (sunset, beach, marble, linen, neon, pastel,
 * forest, ocean, desert, night), mood (dramatic, moody, dark / soft, airy,
 * bright). A prompt without any of them keeps the style's default, so the
 * same seed gives the same picture as with no prompt at all.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "provider_local.h"
#include "util.h"

/* ---- palettes ---- */

static const double studio_palettes[][2][3] = {
    {{214, 209, 202}, {228, 223, 216}}, /* warm grey */
    {{200, 205, 212}, {220, 223, 228}}, /* cool grey */
    {{224, 209, 190}, {234, 222, 206}}, /* sand */
    {{197, 207, 193}, {216, 223, 212}}, /* sage */
    {{190, 202, 216}, {210, 219, 230}}, /* dusty blue */
    {{228, 207, 200}, {238, 222, 216}}, /* blush */
};

static const double duotones[][2][3] = {
    {{16, 46, 58}, {246, 178, 142}}, /* deep teal → peach */
    {{30, 24, 78}, {242, 198, 104}}, /* indigo → gold */
    {{58, 18, 56}, {250, 140, 116}}, /* plum → coral */
    {{14, 44, 34}, {196, 232, 200}}, /* forest → mint */
    {{12, 26, 58}, {236, 120, 156}}, /* navy → rose */
    {{40, 30, 26}, {226, 208, 176}}, /* espresso → cream */
};

/* A setting word: its studio wall/floor, its artistic duotone, a texture. */
typedef struct setting {
    const char *word;
    double wall[3], floor[3];
    double dark[3], light[3];
    int texture;   /* LOOK_TEX_* */
    double warmth; /* the light's own warmth, -1..1 */
} setting;

static const setting settings[] = {
    {"sunset", {236, 192, 168}, {242, 212, 186}, {62, 22, 66}, {255, 164, 98}, LOOK_TEX_NONE, 0.7},
    {"beach", {198, 222, 236}, {234, 216, 186}, {18, 70, 104}, {250, 222, 164}, LOOK_TEX_NONE, 0.3},
    {"marble", {230, 230, 228}, {242, 241, 239}, {34, 36, 42}, {222, 222, 228}, LOOK_TEX_MARBLE, 0},
    {"linen", {222, 212, 196}, {232, 224, 210}, {72, 58, 46}, {236, 222, 200}, LOOK_TEX_LINEN, 0.2},
    {"neon", {44, 30, 72}, {62, 40, 92}, {14, 6, 40}, {255, 52, 212}, LOOK_TEX_NONE, -0.2},
    {"pastel",
     {240, 222, 232},
     {226, 238, 232},
     {150, 170, 222},
     {255, 222, 236},
     LOOK_TEX_NONE,
     0},
    {"forest", {190, 208, 186}, {208, 220, 198}, {12, 42, 30}, {192, 230, 190}, LOOK_TEX_NONE, 0},
    {"ocean", {184, 208, 226}, {204, 222, 234}, {8, 34, 70}, {120, 210, 230}, LOOK_TEX_NONE, -0.4},
    {"desert", {232, 200, 160}, {238, 214, 180}, {90, 40, 20}, {250, 200, 130}, LOOK_TEX_NONE, 0.5},
    {"night", {60, 66, 88}, {78, 82, 104}, {6, 8, 24}, {90, 110, 190}, LOOK_TEX_NONE, -0.5},
};

/* Other words that mean a setting. */
static const struct {
    const char *word, *setting;
} setting_aliases[] = {
    {"sunrise", "sunset"}, {"dusk", "sunset"},    {"sand", "beach"},   {"seaside", "beach"},
    {"summer", "beach"},   {"stone", "marble"},   {"cotton", "linen"}, {"fabric", "linen"},
    {"cyberpunk", "neon"}, {"pastels", "pastel"}, {"candy", "pastel"}, {"woods", "forest"},
    {"garden", "forest"},  {"sea", "ocean"},      {"dune", "desert"},  {"midnight", "night"},
};

static const char *const warm_words[] = {"warm", "golden", "sunny", "autumn", "cozy", "amber"};
static const char *const cool_words[] = {"cool", "cold", "icy", "winter", "frost", "blue"};
static const char *const drama_words[] = {"dramatic", "moody", "dark", "bold", "contrast"};
static const char *const soft_words[] = {"soft", "airy", "bright", "gentle", "clean"};

/* ---- the prompt ---- */

static bool word_in(const char *w, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (str_eq(w, list[i])) return true;
    return false;
}

/* Contract in provider_local.h. */
void look_words_parse(const char *prompt, look_words *lw)
{
    memset(lw, 0, sizeof *lw);
    lw->setting = -1;
    if (!prompt) return;
    char w[32];
    size_t wl = 0;
    int left = 0, right = 0;
    for (const char *p = prompt;; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch && isalpha(ch)) {
            if (wl < sizeof w - 1) w[wl++] = (char)tolower(ch);
            continue;
        }
        w[wl] = 0;
        if (wl) {
            const char *set = w;
            for (size_t i = 0; i < ARRAY_LEN(setting_aliases); i++)
                if (str_eq(w, setting_aliases[i].word)) set = setting_aliases[i].setting;
            for (size_t i = 0; i < ARRAY_LEN(settings); i++)
                if (str_eq(set, settings[i].word) && lw->setting < 0) lw->setting = (int)i;
            if (str_eq(w, "left")) left++;
            if (str_eq(w, "right")) right++;
            if (word_in(w, warm_words, ARRAY_LEN(warm_words))) lw->warmth += 1;
            if (word_in(w, cool_words, ARRAY_LEN(cool_words))) lw->warmth -= 1;
            if (word_in(w, drama_words, ARRAY_LEN(drama_words))) lw->drama += 1;
            if (word_in(w, soft_words, ARRAY_LEN(soft_words))) lw->drama -= 1;
        }
        wl = 0;
        if (!ch) break;
    }
    lw->side = left > right ? -1 : right > left ? 1 : 0;
    lw->warmth = clampd(lw->warmth, -1, 1);
    lw->drama = clampd(lw->drama, -1, 1);
    lw->any = lw->setting >= 0 || lw->side || lw->warmth != 0 || lw->drama != 0;
}

/* ---- the plan ---- */

static double colour_dist(const double a[3], const double b[3])
{
    return sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                (a[2] - b[2]) * (a[2] - b[2]));
}

/* Warms (w > 0) or cools (w < 0) a colour by up to about 8%. */
static void warm(double c[3], double w)
{
    c[0] = clampd(c[0] * (1 + 0.07 * w), 0, 255);
    c[1] = clampd(c[1] * (1 + 0.01 * w), 0, 255);
    c[2] = clampd(c[2] * (1 - 0.08 * w), 0, 255);
}

/* Contract in provider_local.h. */
void look_plan(style_plan *sp, int kind, const double prod_mean[3], const look_words *lw, rng *r)
{
    memset(sp, 0, sizeof *sp);
    sp->kind = kind;
    /* The draws come in a fixed order, whatever the prompt says: a prompt
     * changes what it names and nothing else. */
    size_t np = ARRAY_LEN(studio_palettes), ok[ARRAY_LEN(studio_palettes)], nok = 0;
    for (size_t i = 0; i < np; i++)
        if (colour_dist(studio_palettes[i][0], prod_mean) > 45) ok[nok++] = i;
    size_t studio_pick = nok ? ok[rng_next(r) % nok] : rng_next(r) % np;
    size_t duo_pick = rng_next(r) % ARRAY_LEN(duotones);
    double side = rng_unit(r) < 0.5 ? -1 : 1;
    double light_off = rng_range(r, 0.10, 0.28);
    sp->light_y = rng_range(r, 0.22, 0.36);
    double angle_jitter = rng_range(r, -0.9, 0.9);
    sp->floor_y = rng_range(r, 0.80, 0.85);

    if (lw->side) side = lw->side;
    sp->light_x = 0.5 + side * light_off;
    sp->light_angle = (side < 0 ? M_PI : 0) + angle_jitter + M_PI / 2 * 0.35;
    sp->side = side;
    sp->vignette = 1 + 0.5 * lw->drama;
    sp->contrast = 1 + 0.6 * lw->drama;
    sp->warmth = lw->warmth;
    const setting *st = lw->setting >= 0 ? &settings[lw->setting] : NULL;
    if (st) {
        sp->texture = st->texture;
        if (!lw->warmth) sp->warmth = st->warmth;
    }
    if (kind == 0) {
        memcpy(sp->wall, st ? st->wall : studio_palettes[studio_pick][0], sizeof sp->wall);
        memcpy(sp->floor, st ? st->floor : studio_palettes[studio_pick][1], sizeof sp->floor);
        warm(sp->wall, sp->warmth);
        warm(sp->floor, sp->warmth);
    } else if (kind == 1) {
        memcpy(sp->dark, st ? st->dark : duotones[duo_pick][0], sizeof sp->dark);
        memcpy(sp->light, st ? st->light : duotones[duo_pick][1], sizeof sp->light);
        warm(sp->light, sp->warmth);
        warm(sp->dark, sp->warmth * 0.5);
    } else {
        for (int c = 0; c < 3; c++)
            sp->wall[c] = 255;
        sp->texture = LOOK_TEX_NONE;
    }
}

/* ---- the backdrop ---- */

/* Per-pixel dither in [-0.5, 0.5): breaks up banding in smooth gradients. */
static inline float dither(uint32_t x, uint32_t y, uint32_t salt)
{
    uint32_t h = x * 0x8DA6B343u ^ y * 0xD8163841u ^ salt * 0xCB1AB31Fu;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return (float)(h & 0xFFFF) / 65536.0f - 0.5f;
}

/* A surface texture's brightness factor at (x, y) in long-side units. */
static double texture_at(int tex, double x, double y, int px, int py)
{
    if (tex == LOOK_TEX_MARBLE) {
        /* Veins: thin, faint, warped diagonal lines, a few strong ones
         * and more hairlines. */
        double t = x * 3.0 + y * 1.3 + 0.8 * sin(y * 4.0 + 1.3 * sin(x * 3.0)) +
                   0.3 * sin(x * 9.0 + y * 5.0);
        double v = fabs(sin(t * 2.2)), hv = fabs(sin(t * 5.1 + 1.0));
        return 1 - 0.07 * pow(1 - v, 40) - 0.03 * pow(1 - hv, 60);
    }
    if (tex == LOOK_TEX_LINEN) {
        /* A fine weave: alternating threads, one or two pixels each. */
        int a = (px / 2) & 1, b = (py / 2) & 1;
        return 1 + 0.012 * (a ^ b ? 1 : -1) + 0.006 * sin(py * 0.9);
    }
    return 1;
}

/* The backdrop's smooth part (colour × light × contact shade) at one
 * point, before texture and dither. */
static void smooth_at(const style_plan *s, int w, int h, double x, double y, const contact *cts,
                      size_t ncts, float out[3])
{
    double span = fmax(w, h);
    double diag2 = 0.25 * ((double)w * w + (double)h * h) / (span * span);
    double yn = y / h;
    double cx = (x - w / 2.0) / span, cy = (y - h / 2.0) / span;
    double r2 = (cx * cx + cy * cy) / diag2;
    double col[3];
    if (s->kind == 0) {
        double t = smoothstep(s->floor_y - 0.32, s->floor_y + 0.06, yn);
        double lx = x / span - s->light_x * w / span;
        double ly = y / span - s->light_y * h / span;
        double key = 0.91 + 0.15 * s->contrast * exp(-(lx * lx + ly * ly) / (2 * 0.30 * 0.30));
        double vig = 1 - 0.20 * s->vignette * pow(r2, 1.4);
        double near = 1 - 0.05 * smoothstep(s->floor_y, 1.0, yn);
        for (int c = 0; c < 3; c++)
            col[c] = lerp(s->wall[c], s->floor[c], t) * key * vig * near;
    } else if (s->kind == 1) {
        double proj = (cx * cos(s->light_angle) + cy * sin(s->light_angle)) * 1.6;
        double lx = x / span - s->light_x * w / span;
        double ly = y / span - s->light_y * h / span;
        double spot = exp(-(lx * lx + ly * ly) / (2 * 0.22 * 0.22));
        double b = 0.30 + 0.22 * proj * s->contrast + 0.50 * spot;
        b *= 1 - 0.55 * s->vignette * pow(r2, 1.2);
        b = clampd(b, 0, 1);
        for (int c = 0; c < 3; c++)
            col[c] = lerp(s->dark[c], s->light[c], b);
    } else {
        col[0] = col[1] = col[2] = 255;
    }
    double shade = 1;
    for (size_t i = 0; i < ncts; i++) {
        double ex = (x - cts[i].cx) / cts[i].rx, ey = (y - cts[i].cy) / cts[i].ry;
        double e = ex * ex + ey * ey;
        if (e < 9) shade *= 1 - cts[i].strength * exp(-2.2 * e);
    }
    for (int c = 0; c < 3; c++)
        out[c] = (float)(col[c] * shade);
}

#define GRID 4 /* the smooth part is computed every GRID pixels, then interpolated */

/* Contract in provider_local.h. */
unsigned char *look_backdrop(const style_plan *s, int w, int h, const contact *cts, size_t ncts,
                             uint32_t salt)
{
    unsigned char *out = xmalloc((size_t)w * h * 3);
    int gw = w / GRID + 2, gh = h / GRID + 2;
    float *g = xmalloc((size_t)gw * gh * 3 * sizeof *g);
    for (int gy = 0; gy < gh; gy++)
        for (int gx = 0; gx < gw; gx++)
            smooth_at(s, w, h, gx * GRID + 0.5, gy * GRID + 0.5, cts, ncts,
                      &g[((size_t)gy * gw + gx) * 3]);
    double span = fmax(w, h);
    /* Minimal stays exactly 255 where nothing shades it: no dither. */
    bool dith = s->kind != 2;
    for (int y = 0; y < h; y++) {
        unsigned char *o = out + (size_t)y * w * 3;
        int gy = y / GRID;
        float fy = (float)(y - gy * GRID) / GRID;
        const float *r0 = g + (size_t)gy * gw * 3, *r1 = r0 + (size_t)gw * 3;
        for (int x = 0; x < w; x++) {
            int gx = x / GRID;
            float fx = (float)(x - gx * GRID) / GRID;
            const float *a = r0 + gx * 3, *b = a + 3, *c = r1 + gx * 3, *d = c + 3;
            double tex =
                s->texture ? texture_at(s->texture, (x + 0.5) / span, (y + 0.5) / span, x, y) : 1;
            float dz = dith ? dither((uint32_t)x, (uint32_t)y, salt) : 0;
            for (int k = 0; k < 3; k++) {
                float top = a[k] + (b[k] - a[k]) * fx, bot = c[k] + (d[k] - c[k]) * fx;
                float v = (float)((top + (bot - top) * fy) * tex) + dz + 0.5f;
                o[x * 3 + k] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(g);
    return out;
}
