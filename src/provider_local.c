/*
 * provider_local — `local-studio`, the built-in offline compositor (SPEC §7).
 *
 * Not a neural model: it cuts each product out of a plain background,
 * arranges the cut-outs at the requested aspect ratio and composes them on
 * a backdrop that follows the style, or onto the model photo when one is
 * given:
 *
 *   decode    libvips thumbnail (shrink-on-load) → 8-bit sRGB in memory
 *   cut-out   background colour from the border pixels (per-channel median),
 *             flood fill from the border through pixels close to it (so a
 *             white print inside a garment survives), soft alpha from the
 *             colour distance, specks removed (connected components), 1 px
 *             choke + small blur, edge colours bled in from the solid
 *             interior (no halo), trimmed to the bounding box. A PNG with a
 *             real alpha channel is used as is; a photo with no plain
 *             background becomes a rounded "card".
 *   layout    the cut-outs in one to three rows, bottom-aligned, fitted in
 *             a box whose size and position the seed varies
 *   backdrop  realistic: lit studio sweep (wall → floor gradient, key light,
 *             vignette) with contact and floor shadows; artistic: duotone
 *             backdrop, directional light, strong vignette, whole image
 *             colour-graded; minimal: near-white with a soft shadow; model:
 *             the model photo cover-cropped to the frame, products lower
 *             centre with a drop shadow
 *   encode    JPEG, quality 90
 *
 * The cut-out is in provider_local_cutout.c (shared declarations in
 * provider_local.h); everything else is here.
 *
 * Everything random comes from a splitmix64 stream seeded by the seed, the
 * variant and the style, and every step is deterministic, so the same
 * input, seed and variant give byte-identical output.
 *
 * DESIGN (threads). libvips is initialised once (pthread_once); after that
 * it may be used from any number of threads at once. Each render builds its
 * own pipeline, owns all its buffers, and ends with vips_thread_shutdown()
 * to free the calling thread's libvips per-thread state. The libvips
 * operation cache is disabled: the inputs are new images every time, so it
 * would only hold memory. A render runs on the calling (worker) thread;
 * libvips fans the pixel work of the final encode out over its own pool.
 * Cancellation is checked between steps, and during the encode through the
 * image's "eval" signal, which kills the pipeline.
 */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "log.h"
#include "provider_local.h"
#include "util.h"

#define MAX_PRODUCTS 5
#define QSCALE 4 /* shadow masks are drawn at 1/QSCALE resolution, then blurred */

/* ---- libvips set-up ---- */

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static bool vips_ready;

static void vips_setup(void)
{
    if (VIPS_INIT("stylestudio") != 0) {
        log_error("libvips init failed: %s", vips_error_buffer());
        vips_error_clear();
        return;
    }
    vips_cache_set_max(0);
    /* A render allocates and frees tens of megabytes (the matte's maps,
     * libvips' pixel buffers). By default glibc maps each large block
     * fresh and unmaps it on free, and trims the heap top: every render
     * then faults all its memory in again, which on a virtual machine cost
     * more than the render itself (a 768² cut-out: 125 ms CPU against
     * 37 ms with the memory kept). Keep it: blocks up to 32 MiB come from
     * the heap, and up to 256 MiB of free heap stays with the process. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    vips_ready = true;
}

/* ---- deterministic randomness ---- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_range(rng *r, double a, double b)
{
    return a + (b - a) * rng_unit(r);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* Per-pixel dither in [-0.5, 0.5): breaks up banding in smooth gradients. */
static inline float dither(uint32_t x, uint32_t y, uint32_t salt)
{
    uint32_t h = x * 0x8DA6B343u ^ y * 0xD8163841u ^ salt * 0xCB1AB31Fu;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return (float)(h & 0xFFFF) / 65536.0f - 0.5f;
}

static inline double lerp(double a, double b, double t)
{
    return a + (b - a) * t;
}

/* ---- output size ---- */

void provider_local_size(const char *aspect_ratio, const char *quality, int *width, int *height)
{
    int aw = 1, ah = 1;
    if (aspect_ratio && sscanf(aspect_ratio, "%d:%d", &aw, &ah) != 2) aw = ah = 1;
    if (aw <= 0 || ah <= 0 || aw > 100 || ah > 100) aw = ah = 1;
    int long_side = str_eq(quality, "high") ? 1536 : 1024;
    if (aw >= ah) {
        *width = long_side;
        *height = (int)lround((double)long_side * ah / aw);
    } else {
        *height = long_side;
        *width = (int)lround((double)long_side * aw / ah);
    }
}

/* ---- layout ---- */

typedef struct placed {
    const cutout *c;
    int x, y, w, h; /* in output pixels */
} placed;

/* Arranges the cut-outs in rows inside the box (bx, by, bw, bh), bottom
 * rows on the box's bottom edge, horizontally centred on the box. `hero`
 * is drawn a little larger than the others. */
static void layout(const cutout *cs, size_t n, int hero, double bx, double by, double bw, double bh,
                   double gap, double row_bias, placed *out)
{
    double rel[MAX_PRODUCTS];
    /* Relative heights: equal areas (a wide cap is not drawn taller than a
     * shirt), the hero a little larger. */
    double relmax = 0;
    for (size_t i = 0; i < n; i++) {
        rel[i] = ((n > 1 && (int)i != hero) ? 0.82 : 1.0) / sqrt((double)cs[i].w / cs[i].h);
        if (rel[i] > relmax) relmax = rel[i];
    }
    for (size_t i = 0; i < n; i++)
        rel[i] /= relmax;
    int best_rows = 1;
    double best_scale = 0;
    for (int rows = 1; rows <= (int)n && rows <= 3; rows++) {
        size_t per = (n + (size_t)rows - 1) / (size_t)rows;
        double maxw = 0, toth = 0;
        for (size_t start = 0; start < n; start += per) {
            double rw = 0, rh = 0;
            for (size_t i = start; i < n && i < start + per; i++) {
                rw += rel[i] * cs[i].w / cs[i].h + (i > start ? gap : 0);
                if (rel[i] > rh) rh = rel[i];
            }
            if (rw > maxw) maxw = rw;
            toth += rh + (start ? gap : 0);
        }
        double scale = fmin(bw / maxw, bh / toth);
        if (scale > best_scale * row_bias) {
            best_scale = scale;
            best_rows = rows;
        }
    }
    size_t per = (n + (size_t)best_rows - 1) / (size_t)best_rows;
    /* Rows from the bottom up: the last row sits on the box's bottom. */
    double base = by + bh;
    size_t nrows = (n + per - 1) / per;
    for (size_t r = nrows; r-- > 0;) {
        size_t start = r * per, end = start + per < n ? start + per : n;
        double rw = 0, rh = 0;
        for (size_t i = start; i < end; i++) {
            rw += rel[i] * cs[i].w / cs[i].h + (i > start ? gap : 0);
            if (rel[i] > rh) rh = rel[i];
        }
        double x = bx + (bw - rw * best_scale) / 2;
        for (size_t i = start; i < end; i++) {
            double ih = rel[i] * best_scale, iw = ih * cs[i].w / cs[i].h;
            out[i].c = &cs[i];
            out[i].w = (int)lround(fmax(iw, 1));
            out[i].h = (int)lround(fmax(ih, 1));
            out[i].x = (int)lround(x);
            out[i].y = (int)lround(base - ih);
            x += iw + gap * best_scale;
        }
        base -= (rh + gap) * best_scale;
    }
}

/* ---- shadows ---- */

static float sample_alpha(const cutout *c, double u, double v)
{
    if (u < 0 || v < 0 || u >= 1 || v >= 1) return 0;
    int x = (int)(u * c->w), y = (int)(v * c->h);
    return c->alpha[(size_t)y * c->w + x];
}

enum shadow_kind { SHADOW_DROP, SHADOW_FLOOR };

/* Adds one product's silhouette shadow to the quarter-resolution mask q.
 * DROP: the silhouette moved by (dx, dy). FLOOR: the silhouette flipped
 * down onto the floor from its base, squashed to `k` of its height and
 * sheared by `skew`, fading with distance. */
static void shadow_add(float *q, int qw, int qh, const placed *p, enum shadow_kind kind, double dx,
                       double dy, double k, double skew, float weight)
{
    double x0, x1, y0, y1;
    double base = p->y + p->h;
    if (kind == SHADOW_DROP) {
        x0 = p->x + dx;
        x1 = p->x + p->w + dx;
        y0 = p->y + dy;
        y1 = base + dy;
    } else {
        double len = k * p->h;
        x0 = p->x + fmin(0, skew * len);
        x1 = p->x + p->w + fmax(0, skew * len);
        y0 = base;
        y1 = base + len;
    }
    int qx0 = (int)floor(x0 / QSCALE) - 1, qx1 = (int)ceil(x1 / QSCALE) + 1;
    int qy0 = (int)floor(y0 / QSCALE) - 1, qy1 = (int)ceil(y1 / QSCALE) + 1;
    if (qx0 < 0) qx0 = 0;
    if (qy0 < 0) qy0 = 0;
    if (qx1 > qw) qx1 = qw;
    if (qy1 > qh) qy1 = qh;
    for (int qy = qy0; qy < qy1; qy++)
        for (int qx = qx0; qx < qx1; qx++) {
            double X = (qx + 0.5) * QSCALE, Y = (qy + 0.5) * QSCALE;
            float v;
            if (kind == SHADOW_DROP) {
                v = sample_alpha(p->c, (X - dx - p->x) / p->w, (Y - dy - p->y) / p->h);
            } else {
                double t = (Y - base) / (k * p->h);
                if (t < 0 || t >= 1) continue;
                double u = (X - p->x - skew * (Y - base)) / p->w;
                v = sample_alpha(p->c, u, 1 - t) * (float)(1 - t) * (float)(1 - t);
            }
            v *= weight;
            float *o = &q[(size_t)qy * qw + qx];
            if (v > *o) *o = v;
        }
}

/* Scales a quarter-resolution float mask q (qw×qh) to a w×h 1-band float
 * image owned by ctx, blurred first by sigma (in q's pixels) when > 0. */
static VipsImage *mask_image(VipsImage *ctx, const float *q, int qw, int qh, int w, int h,
                             double sigma)
{
    VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(ctx), 4);
    t[0] = vips_image_new_from_memory_copy(q, (size_t)qw * qh * sizeof *q, qw, qh, 1,
                                           VIPS_FORMAT_FLOAT);
    if (!t[0]) return NULL;
    VipsImage *in = t[0];
    if (sigma > 0) {
        if (vips_gaussblur(t[0], &t[1], sigma, "min_ampl", 0.01, NULL)) return NULL;
        in = t[1];
    }
    if (vips_resize(in, &t[2], (double)w / qw, "vscale", (double)h / qh, "kernel",
                    VIPS_KERNEL_LINEAR, NULL))
        return NULL;
    if (vips_crop(t[2], &t[3], 0, 0, w, h, NULL)) return NULL;
    return t[3];
}

/* ---- backdrops ---- */

typedef struct style_plan {
    int kind; /* 0 realistic, 1 artistic, 2 minimal */
    double wall[3], floor[3];
    double dark[3], light[3]; /* artistic duotone */
    double light_x, light_y;  /* key light, normalised */
    double light_angle;       /* artistic directional light, radians */
    double floor_y;           /* realistic: normalised y of the floor line */
    double grade;             /* artistic: duotone mix on the final image */
} style_plan;

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

static const double minimal_whites[][3] = {
    {248, 248, 246},
    {246, 247, 249},
    {249, 247, 244},
};

static double colour_dist(const double a[3], const double b[3])
{
    return sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                (a[2] - b[2]) * (a[2] - b[2]));
}

/* Contact shadow under a standing product: a soft ellipse at its base. */
typedef struct contact {
    double cx, cy, rx, ry, strength;
} contact;

/* Renders the style backdrop (with contact shadows) into a w×h×3 uchar
 * buffer (caller frees). */
static unsigned char *backdrop(const style_plan *s, int w, int h, const contact *cts, size_t ncts,
                               uint32_t salt)
{
    unsigned char *out = xmalloc((size_t)w * h * 3);
    double span = fmax(w, h);
    double dirx = cos(s->light_angle), diry = sin(s->light_angle);
    for (int y = 0; y < h; y++) {
        double yn = (y + 0.5) / h;
        for (int x = 0; x < w; x++) {
            double xn = (x + 0.5) / w;
            /* Distances in units of the long side, from the centre. */
            double cx = (x + 0.5 - w / 2.0) / span, cy = (y + 0.5 - h / 2.0) / span;
            double r2 =
                (cx * cx + cy * cy) / (0.25 * ((double)w * w + (double)h * h) / (span * span));
            double col[3];
            if (s->kind == 0) {
                double t = smoothstep(s->floor_y - 0.32, s->floor_y + 0.06, yn);
                double lx = (x + 0.5) / span - s->light_x * w / span;
                double ly = (y + 0.5) / span - s->light_y * h / span;
                double key = 0.91 + 0.15 * exp(-(lx * lx + ly * ly) / (2 * 0.30 * 0.30));
                double vig = 1 - 0.20 * pow(r2, 1.4);
                /* The floor darkens a touch towards the camera. */
                double near = 1 - 0.05 * smoothstep(s->floor_y, 1.0, yn);
                for (int c = 0; c < 3; c++)
                    col[c] = lerp(s->wall[c], s->floor[c], t) * key * vig * near;
            } else if (s->kind == 1) {
                double proj = (cx * dirx + cy * diry) * 1.6;
                double lx = (x + 0.5) / span - s->light_x * w / span;
                double ly = (y + 0.5) / span - s->light_y * h / span;
                double spot = exp(-(lx * lx + ly * ly) / (2 * 0.22 * 0.22));
                double b = 0.30 + 0.22 * proj + 0.50 * spot;
                b *= 1 - 0.55 * pow(r2, 1.2);
                b = clampd(b, 0, 1);
                for (int c = 0; c < 3; c++)
                    col[c] = lerp(s->dark[c], s->light[c], b);
            } else {
                double lift = 1 + 0.012 * (1 - r2) - 0.018 * r2;
                for (int c = 0; c < 3; c++)
                    col[c] = s->wall[c] * lift;
            }
            (void)xn;
            double shade = 1;
            for (size_t i = 0; i < ncts; i++) {
                double ex = (x + 0.5 - cts[i].cx) / cts[i].rx,
                       ey = (y + 0.5 - cts[i].cy) / cts[i].ry;
                double e = ex * ex + ey * ey;
                if (e < 9) shade *= 1 - cts[i].strength * exp(-2.2 * e);
            }
            float dz = dither((uint32_t)x, (uint32_t)y, salt);
            for (int c = 0; c < 3; c++)
                out[((size_t)y * w + x) * 3 + c] =
                    (unsigned char)clampd(col[c] * shade + dz + 0.5, 0, 255);
        }
    }
    return out;
}

/* A 1-band float light map for the finished image (vignette, directional
 * light), owned by ctx. */
static VipsImage *light_map(VipsImage *ctx, int w, int h, double angle, double directional,
                            double vignette)
{
    int qw = (w + QSCALE - 1) / QSCALE, qh = (h + QSCALE - 1) / QSCALE;
    float *m = xmalloc((size_t)qw * qh * sizeof *m);
    double span = fmax(w, h), dx = cos(angle), dy = sin(angle);
    double half_diag2 = 0.25 * ((double)w * w + (double)h * h) / (span * span);
    for (int y = 0; y < qh; y++)
        for (int x = 0; x < qw; x++) {
            double cx = ((x + 0.5) * QSCALE - w / 2.0) / span,
                   cy = ((y + 0.5) * QSCALE - h / 2.0) / span;
            double r2 = (cx * cx + cy * cy) / half_diag2;
            double l = 1 + directional * (cx * dx + cy * dy) * 1.4;
            l *= 1 - vignette * pow(r2, 1.3);
            m[(size_t)y * qw + x] = (float)l;
        }
    VipsImage *img = mask_image(ctx, m, qw, qh, w, h, 0);
    free(m);
    return img;
}

/* ---- the render ---- */

typedef struct eval_ctx {
    const atomic_bool *cancel;
    void (*progress)(void *ctx, int pct);
    void *progress_ctx;
    int last;
} eval_ctx;

static void report(eval_ctx *e, int pct)
{
    if (pct <= e->last) return;
    e->last = pct;
    if (e->progress) e->progress(e->progress_ctx, pct);
}

static bool cancelled(const eval_ctx *e)
{
    return e->cancel && atomic_load(e->cancel);
}

static void on_eval(VipsImage *image, VipsProgress *progress, void *user)
{
    eval_ctx *e = user;
    if (cancelled(e))
        vips_image_set_kill(image, TRUE);
    else
        report(e, 80 + progress->percent * 19 / 100);
}

/* One render's state, handed from phase to phase. rs->ctx owns every
 * intermediate image (see next_slot); rs->cuts, rs->bd and rs->q own their
 * buffers. All are released by provider_local_render, whatever the
 * outcome. bd and q are held to the end, as before the phases were split,
 * although libvips copies them: freeing the backdrop (3 MB at 1024²) in
 * mid-render, while libvips allocates, gave several times the page faults
 * (the memory goes back to the system and is faulted in again) and a
 * slower render. */
typedef struct render_state {
    const gen_params *p;
    int variant;
    size_t n_products;
    int W, H;      /* output size */
    double m;      /* the short side (box and shadow sizes) */
    bool high;     /* quality "high": products decoded at 1536 */
    int kind;      /* 0 realistic, 1 artistic, 2 minimal */
    bool on_model; /* composed onto a model photo */
    eval_ctx ev;
    char **error; /* the caller's: set on failure (caller frees) */
    VipsImage *ctx;
    VipsImage **t; /* ctx's local array of 64 images */
    int ti;        /* its next free slot */
    cutout cuts[MAX_PRODUCTS];
    placed pl[MAX_PRODUCTS];
    style_plan sp;
    int hero;          /* seed-picked: the product drawn a little larger, */
    double fill;       /* how much of its box the group fills (0..1), */
    double shift;      /* and its sideways shift (-1..1) */
    VipsImage *base;   /* the picture so far (owned by ctx) */
    unsigned char *bd; /* the backdrop's pixels (base_backdrop) */
    float *q;          /* the shadow mask (add_shadows) */
} render_state;

/* A slot for one intermediate image: what is stored there is unreffed
 * with rs->ctx. */
static VipsImage **next_slot(render_state *rs)
{
    return &rs->t[rs->ti++];
}

/* Ends a phase on a libvips failure: logged, *error set unless a phase
 * set it already. Returns PROVIDER_REJECTED. */
static int render_vips_failed(render_state *rs)
{
    log_warn("local-studio render failed: %s", vips_error_buffer());
    vips_error_clear();
    if (!*rs->error) *rs->error = xstrdup("local-studio could not render this image");
    return PROVIDER_REJECTED;
}

/* Ends a phase on cancellation: *error becomes "cancelled". Returns
 * PROVIDER_CANCELLED. */
static int render_cancelled(render_state *rs)
{
    vips_error_clear();
    free(*rs->error);
    *rs->error = xstrdup("cancelled");
    return PROVIDER_CANCELLED;
}

/* Between steps: reports pct done, then PROVIDER_OK, or PROVIDER_CANCELLED
 * when the job has been cancelled. */
static int checkpoint(render_state *rs, int pct)
{
    report(&rs->ev, pct);
    return cancelled(&rs->ev) ? render_cancelled(rs) : PROVIDER_OK;
}

/* The long side products are decoded (and matted) at: a product never
 * takes more than about 72% of the frame's long side, so 3/4 of it is
 * enough and costs half the pixels of the full side. */
static int decode_side(const render_state *rs)
{
    return (int)lround(0.75 * (rs->W > rs->H ? rs->W : rs->H));
}

/* Phase 1 (5–40 %): decodes every product and cuts it out into rs->cuts. */
static int cut_out_products(render_state *rs, const provider_image *products)
{
    for (size_t i = 0; i < rs->n_products; i++) {
        unsigned char *px;
        int w, h, nb;
        if (cutout_decode(&products[i], decode_side(rs), &px, &w, &h, &nb)) {
            vips_error_clear();
            *rs->error = xasprintf("product image %zu could not be decoded", i + 1);
            return PROVIDER_INPUT;
        }
        cutout_make(px, w, h, nb, &rs->cuts[i]);
        int rc = checkpoint(rs, 5 + (int)(35 * (i + 1) / rs->n_products));
        if (rc != PROVIDER_OK) return rc;
    }
    return PROVIDER_OK;
}

/* Phase 2a: the style plan (palette, light) and the composition (hero,
 * fill, shift). The draws from r come in a fixed order: changing it
 * changes every render. */
static void plan_style(render_state *rs, rng *r)
{
    style_plan *sp = &rs->sp;
    size_t n_products = rs->n_products;
    double prod_mean[3] = {0, 0, 0};
    for (size_t i = 0; i < n_products; i++)
        for (int c = 0; c < 3; c++)
            prod_mean[c] += rs->cuts[i].mean[c] / n_products;
    if (rs->kind == 0) {
        /* A seed-picked palette among those that stand apart from the product. */
        size_t np = ARRAY_LEN(studio_palettes), ok[ARRAY_LEN(studio_palettes)], nok = 0;
        for (size_t i = 0; i < np; i++)
            if (colour_dist(studio_palettes[i][0], prod_mean) > 45) ok[nok++] = i;
        size_t pick = nok ? ok[rng_next(r) % nok] : rng_next(r) % np;
        memcpy(sp->wall, studio_palettes[pick][0], sizeof sp->wall);
        memcpy(sp->floor, studio_palettes[pick][1], sizeof sp->floor);
    } else if (rs->kind == 1) {
        size_t pick = rng_next(r) % ARRAY_LEN(duotones);
        memcpy(sp->dark, duotones[pick][0], sizeof sp->dark);
        memcpy(sp->light, duotones[pick][1], sizeof sp->light);
        sp->grade = rng_range(r, 0.22, 0.34);
    } else {
        memcpy(sp->wall, minimal_whites[rng_next(r) % ARRAY_LEN(minimal_whites)], sizeof sp->wall);
    }
    double side = rng_unit(r) < 0.5 ? -1 : 1;
    sp->light_x = 0.5 + side * rng_range(r, 0.10, 0.28);
    sp->light_y = rng_range(r, 0.22, 0.36);
    sp->light_angle = (side < 0 ? M_PI : 0) + rng_range(r, -0.9, 0.9) + M_PI / 2 * 0.35;
    sp->floor_y = rng_range(r, 0.80, 0.85);
    rs->hero = (int)((size_t)(rs->variant + (int)(rng_next(r) % 5)) % n_products);
    rs->fill = rng_range(r, 0.0, 1.0);
    rs->shift = rng_range(r, -1, 1);
}

/* Phase 2b: the box the products are fitted in, by style, and their
 * placement in rs->pl. On a studio floor a low group moves up and the
 * floor line (sp.floor_y) with it. */
static void plan_layout(render_state *rs)
{
    int W = rs->W, H = rs->H, kind = rs->kind;
    bool on_model = rs->on_model;
    size_t n_products = rs->n_products;
    double m = rs->m, fill = rs->fill, shift = rs->shift;
    style_plan *sp = &rs->sp;
    placed *pl = rs->pl;
    double bx, by, bw, bh;
    if (on_model) {
        double s = m * lerp(0.36, 0.46, fill) * (n_products > 1 ? 1.25 : 1.0);
        bw = fmin(s * (n_products > 1 ? 1.6 : 1.0), W * 0.9);
        bh = fmin(s, H * 0.45);
        double cx = W * (0.5 + 0.10 * shift), cyb = H * 0.90;
        bx = clampd(cx - bw / 2, W * 0.04, W * 0.96 - bw);
        by = cyb - bh;
    } else if (kind == 0) {
        double base = sp->floor_y * H;
        bh = fmin(base - H * 0.10, H * lerp(0.56, 0.70, fill));
        bw = W * lerp(0.62, 0.74, fill);
        bx = (W - bw) / 2 + W * 0.04 * shift;
        by = base - bh;
    } else if (kind == 1) {
        bh = H * lerp(0.58, 0.72, fill);
        bw = W * lerp(0.58, 0.72, fill);
        bx = (W - bw) / 2 + W * 0.07 * shift;
        by = (H - bh) / 2 + H * 0.02;
    } else {
        bh = H * lerp(0.56, 0.66, fill);
        bw = W * lerp(0.60, 0.70, fill);
        bx = (W - bw) / 2;
        by = (H - bh) / 2 - H * 0.02;
    }
    /* Standing on a studio floor, up to three products share one row;
     * elsewhere a second row is taken when it gives clearly larger ones. */
    double row_bias = kind == 0 && !on_model ? (n_products <= 3 ? 1e9 : 1.6) : 1.15;
    layout(rs->cuts, n_products, rs->hero, bx, by, bw, bh, 0.10, row_bias, pl);
    if (kind == 0 && !on_model) {
        /* A low group stands on a floor raised towards the middle, so the
         * picture is not all empty wall. */
        int top = H, bottom = 0;
        for (size_t i = 0; i < n_products; i++) {
            if (pl[i].y < top) top = pl[i].y;
            if (pl[i].y + pl[i].h > bottom) bottom = pl[i].y + pl[i].h;
        }
        double want = (H + (bottom - top)) / 2.0 + H * 0.07;
        if (want < bottom) {
            int dy = (int)lround(want) - bottom;
            for (size_t i = 0; i < n_products; i++)
                pl[i].y += dy;
            sp->floor_y = want / H;
        }
    } else if (kind != 0 && !on_model) {
        /* Centre the group vertically in the box (it sits on its bottom). */
        int top = H, bottom = 0;
        for (size_t i = 0; i < n_products; i++) {
            if (pl[i].y < top) top = pl[i].y;
            if (pl[i].y + pl[i].h > bottom) bottom = pl[i].y + pl[i].h;
        }
        int dy = (int)lround(by + (bh - (bottom - top)) / 2) - top;
        for (size_t i = 0; i < n_products; i++)
            pl[i].y += dy;
    }
}

/* Phase 2 (45 %): the plan — palette, light, placement. */
static int plan(render_state *rs, rng *r)
{
    plan_style(rs, r);
    plan_layout(rs);
    return checkpoint(rs, 45);
}

/* Phase 3 on a model photo: the photo the variant picks, cover-cropped to
 * the frame, as rs->base. */
static int base_from_model(render_state *rs, const provider_image *models, size_t n_models)
{
    int W = rs->W, H = rs->H;
    const provider_image *mi = &models[(size_t)rs->variant % n_models];
    VipsImage **th = next_slot(rs), **cs = next_slot(rs), **u = next_slot(rs);
    if (vips_thumbnail_buffer(mi->data, mi->len, th, W, "height", H, "crop",
                              VIPS_INTERESTING_ATTENTION, "size", VIPS_SIZE_BOTH, NULL) ||
        vips_colourspace(*th, cs, VIPS_INTERPRETATION_sRGB, NULL) ||
        vips_cast_uchar(*cs, u, NULL)) {
        vips_error_clear();
        *rs->error =
            xasprintf("model image %zu could not be decoded", (size_t)rs->variant % n_models + 1);
        return PROVIDER_INPUT;
    }
    VipsImage *base = *u;
    if (base->Bands == 4 || base->Bands == 2) {
        VipsImage **fl = next_slot(rs);
        if (vips_flatten(base, fl, NULL)) return render_vips_failed(rs);
        base = *fl;
    }
    if (base->Xsize != W || base->Ysize != H) {
        VipsImage **cr = next_slot(rs);
        if (vips_crop(base, cr, 0, 0, VIPS_MIN(W, base->Xsize), VIPS_MIN(H, base->Ysize), NULL))
            return render_vips_failed(rs);
        VipsImage **em = next_slot(rs);
        if (vips_embed(*cr, em, 0, 0, W, H, "extend", VIPS_EXTEND_COPY, NULL))
            return render_vips_failed(rs);
        base = *em;
    }
    rs->base = base;
    return PROVIDER_OK;
}

/* Phase 3 otherwise: the style backdrop, with contact shadows under the
 * placed products (realistic, minimal), as rs->base. */
static int base_backdrop(render_state *rs)
{
    int W = rs->W, H = rs->H, kind = rs->kind;
    contact cts[MAX_PRODUCTS * 2];
    size_t ncts = 0;
    for (size_t i = 0; i < rs->n_products; i++) {
        const placed *pp = &rs->pl[i];
        double fx0 = pp->x + pp->w * pp->c->foot0, fx1 = pp->x + pp->w * pp->c->foot1;
        double fcx = (fx0 + fx1) / 2, frx = fmax((fx1 - fx0) / 2, pp->w * 0.15);
        double baseY = pp->y + pp->h;
        if (kind == 0) {
            cts[ncts++] =
                (contact){fcx, baseY - pp->h * 0.004, frx * 1.02, fmax(3, pp->h * 0.018), 0.50};
            cts[ncts++] =
                (contact){fcx, baseY + pp->h * 0.01, frx * 1.25, fmax(6, pp->h * 0.05), 0.22};
        } else if (kind == 2) {
            double cx = pp->x + pp->w / 2.0;
            cts[ncts++] = (contact){cx, baseY + H * 0.035, pp->w * 0.40, fmax(5, H * 0.022), 0.16};
        }
    }
    rs->bd =
        backdrop(&rs->sp, W, H, cts, ncts, (uint32_t)rs->p->seed ^ (uint32_t)rs->variant * 7919u);
    VipsImage **b = next_slot(rs);
    *b = vips_image_new_from_memory_copy(rs->bd, (size_t)W * H * 3, W, H, 3, VIPS_FORMAT_UCHAR);
    if (!*b) return render_vips_failed(rs);
    (*b)->Type = VIPS_INTERPRETATION_sRGB;
    rs->base = *b;
    return PROVIDER_OK;
}

/* Phase 3 (55 %): the base image — the model photo or a style backdrop. */
static int build_base(render_state *rs, const provider_image *models, size_t n_models)
{
    int rc = rs->on_model ? base_from_model(rs, models, n_models) : base_backdrop(rs);
    return rc != PROVIDER_OK ? rc : checkpoint(rs, 55);
}

/* Phase 4 (65 %): the products' silhouette shadows, drawn at 1/QSCALE into
 * the mask rs->q, blurred and multiplied into rs->base. */
static int add_shadows(render_state *rs)
{
    int W = rs->W, H = rs->H, kind = rs->kind;
    size_t n_products = rs->n_products;
    double m = rs->m;
    const style_plan *sp = &rs->sp;
    const placed *pl = rs->pl;
    int qw = (W + QSCALE - 1) / QSCALE, qh = (H + QSCALE - 1) / QSCALE;
    float *q = rs->q = xcalloc((size_t)qw * qh, sizeof *q);
    double blur, opacity;
    double lx = cos(sp->light_angle);
    if (rs->on_model) {
        for (size_t i = 0; i < n_products; i++)
            shadow_add(q, qw, qh, &pl[i], SHADOW_DROP, -lx * m * 0.018, m * 0.022, 0, 0, 1);
        blur = m * 0.018;
        opacity = 0.38;
    } else if (kind == 0) {
        for (size_t i = 0; i < n_products; i++)
            shadow_add(q, qw, qh, &pl[i], SHADOW_FLOOR, 0, 0, 0.16, -lx * 1.2, 1);
        blur = m * 0.014;
        opacity = 0.20;
    } else if (kind == 1) {
        for (size_t i = 0; i < n_products; i++)
            shadow_add(q, qw, qh, &pl[i], SHADOW_DROP, -cos(sp->light_angle) * m * 0.035,
                       -sin(sp->light_angle) * m * 0.035 + m * 0.01, 0, 0, 1);
        blur = m * 0.03;
        opacity = 0.42;
    } else {
        for (size_t i = 0; i < n_products; i++)
            shadow_add(q, qw, qh, &pl[i], SHADOW_DROP, 0, m * 0.012, 0, 0, 1);
        blur = m * 0.016;
        opacity = 0.13;
    }
    VipsImage *sh = mask_image(rs->ctx, q, qw, qh, W, H, fmax(blur / QSCALE, 0.5));
    if (!sh) return render_vips_failed(rs);
    VipsImage **f = next_slot(rs), **mul = next_slot(rs);
    double a = -opacity, b = 1;
    if (vips_linear(sh, f, &a, &b, 1, NULL) || vips_multiply(rs->base, *f, mul, NULL))
        return render_vips_failed(rs);
    rs->base = *mul;
    return checkpoint(rs, 65);
}

/* Phase 5 (72 %): the products, resized to their places, over rs->base. */
static int composite_products(render_state *rs)
{
    VipsImage *base = rs->base;
    for (size_t i = 0; i < rs->n_products; i++) {
        const placed *pp = &rs->pl[i];
        const cutout *c = pp->c;
        VipsImage **im = next_slot(rs), **pm = next_slot(rs), **rz = next_slot(rs),
                  **cp = next_slot(rs);
        *im = vips_image_new_from_memory_copy(c->rgba, (size_t)c->w * c->h * 4, c->w, c->h, 4,
                                              VIPS_FORMAT_UCHAR);
        if (!*im) return render_vips_failed(rs);
        (*im)->Type = VIPS_INTERPRETATION_sRGB;
        if (vips_premultiply(*im, pm, NULL) ||
            vips_resize(*pm, rz, (double)pp->w / c->w, "vscale", (double)pp->h / c->h, "kernel",
                        VIPS_KERNEL_LANCZOS3, NULL) ||
            vips_composite2(base, *rz, cp, VIPS_BLEND_MODE_OVER, "x", pp->x, "y", pp->y,
                            "premultiplied", TRUE, NULL))
            return render_vips_failed(rs);
        base = *cp;
        if (base->Bands == 4) {
            VipsImage **eb = next_slot(rs);
            if (vips_extract_band(base, eb, 0, "n", 3, NULL)) return render_vips_failed(rs);
            base = *eb;
        }
    }
    rs->base = base;
    return checkpoint(rs, 72);
}

/* Phase 6 (80 %): grades the whole picture (artistic: duotone, light and
 * vignette; on a model photo: vignette, minimal lifted) and casts it back
 * to 8-bit sRGB. */
static int grade(render_state *rs)
{
    int W = rs->W, H = rs->H, kind = rs->kind;
    const style_plan *sp = &rs->sp;
    VipsImage *base = rs->base;
    if (kind == 1) {
        /* Duotone mix by luminance, then directional light and vignette. */
        VipsImage **lum = next_slot(rs), **duo = next_slot(rs), **mix1 = next_slot(rs),
                  **mix2 = next_slot(rs), **sum = next_slot(rs);
        double a3[3], b3[3], g = sp->grade, keep[3] = {1 - g, 1 - g, 1 - g}, zero[3] = {0, 0, 0};
        for (int c = 0; c < 3; c++) {
            a3[c] = (sp->light[c] - sp->dark[c]) / 255.0 * g;
            b3[c] = sp->dark[c] * g;
        }
        if (vips_colourspace(base, lum, VIPS_INTERPRETATION_B_W, NULL) ||
            vips_linear(*lum, duo, a3, b3, 3, NULL) ||
            vips_linear(base, mix1, keep, zero, 3, NULL) || vips_add(*mix1, *duo, mix2, NULL))
            return render_vips_failed(rs);
        VipsImage *lm = light_map(rs->ctx, W, H, sp->light_angle + M_PI, 0.10, 0.30);
        if (!lm || vips_multiply(*mix2, lm, sum, NULL)) return render_vips_failed(rs);
        base = *sum;
    } else if (rs->on_model) {
        VipsImage *lm = light_map(rs->ctx, W, H, 0, 0, kind == 0 ? 0.16 : 0.10);
        VipsImage **v = next_slot(rs);
        if (!lm || vips_multiply(base, lm, v, NULL)) return render_vips_failed(rs);
        base = *v;
        if (kind == 2) {
            /* Minimal on a photo: lifted, slightly airy. */
            VipsImage **l = next_slot(rs);
            double a = 0.90, b = 24;
            if (vips_linear(base, l, &a, &b, 1, NULL)) return render_vips_failed(rs);
            base = *l;
        }
    }
    VipsImage **u = next_slot(rs);
    if (vips_cast_uchar(base, u, NULL)) return render_vips_failed(rs);
    rs->base = *u;
    rs->base->Type = VIPS_INTERPRETATION_sRGB;
    return checkpoint(rs, 80);
}

/* Phase 7 (80–100 %): runs the pipeline into a JPEG (quality 90) in *out,
 * which then owns the data (the caller frees it with provider_image_free).
 * A cancel during the encode kills the pipeline through the "eval" signal. */
static int encode(render_state *rs, provider_image *out)
{
    VipsImage **fin = next_slot(rs);
    if (vips_copy(rs->base, fin, NULL)) return render_vips_failed(rs);
    vips_image_set_progress(*fin, TRUE);
    g_signal_connect(*fin, "eval", G_CALLBACK(on_eval), &rs->ev);
    void *data = NULL;
    size_t len = 0;
    if (vips_jpegsave_buffer(*fin, &data, &len, "Q", 90, "strip", TRUE, "optimize_coding", TRUE,
                             "subsample_mode", VIPS_FOREIGN_SUBSAMPLE_OFF, NULL))
        return cancelled(&rs->ev) ? render_cancelled(rs) : render_vips_failed(rs);
    if (cancelled(&rs->ev)) {
        g_free(data);
        return render_cancelled(rs);
    }
    /* GLib ≥ 2.46 allocates with malloc, so free() (provider_image_free)
     * is the right release for this buffer. */
    out->data = data;
    out->len = len;
    snprintf(out->format, sizeof out->format, "jpeg");
    out->width = rs->W;
    out->height = rs->H;
    report(&rs->ev, 100);
    return PROVIDER_OK;
}

int provider_local_render(const gen_params *p, const provider_image *products, size_t n_products,
                          const provider_image *models, size_t n_models, int variant,
                          const atomic_bool *cancel, void (*progress)(void *ctx, int pct),
                          void *progress_ctx, provider_image *out, char **error)
{
    pthread_once(&vips_once, vips_setup);
    memset(out, 0, sizeof *out);
    *error = NULL;
    if (!vips_ready) {
        *error = xstrdup("image library failed to start");
        return PROVIDER_REJECTED;
    }
    if (n_products < 1 || n_products > MAX_PRODUCTS) {
        *error = xasprintf("local-studio takes 1 to %d product images", MAX_PRODUCTS);
        return PROVIDER_REJECTED;
    }

    const char *style = p->style;
    render_state rs = {
        .p = p,
        .variant = variant,
        .n_products = n_products,
        .high = str_eq(p->quality, "high"),
        .kind = str_eq(style, "artistic")  ? 1
                : str_eq(style, "minimal") ? 2
                                           : 0,
        .on_model = n_models > 0,
        .ev = {.cancel = cancel, .progress = progress, .progress_ctx = progress_ctx, .last = -1},
        .error = error,
    };
    provider_local_size(p->aspect_ratio, p->quality, &rs.W, &rs.H);
    rs.m = fmin(rs.W, rs.H);
    rs.sp.kind = rs.kind;
    rng r = {.s = hash_str(0xCBF29CE484222325ull, style) ^
                  ((uint64_t)p->seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(variant + 1) << 40)};
    rng_next(&r);
    /* From here on rs.ctx (every intermediate image), rs.cuts, rs.bd and
     * rs.q are held, and released at cleanup. */
    rs.ctx = vips_image_new();
    rs.t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(rs.ctx), 64);
    report(&rs.ev, 0);

    int rc;
    if ((rc = cut_out_products(&rs, products)) != PROVIDER_OK) goto cleanup;
    if ((rc = plan(&rs, &r)) != PROVIDER_OK) goto cleanup;
    if ((rc = build_base(&rs, models, n_models)) != PROVIDER_OK) goto cleanup;
    if ((rc = add_shadows(&rs)) != PROVIDER_OK) goto cleanup;
    if ((rc = composite_products(&rs)) != PROVIDER_OK) goto cleanup;
    if ((rc = grade(&rs)) != PROVIDER_OK) goto cleanup;
    rc = encode(&rs, out);
cleanup:
    g_object_unref(rs.ctx);
    free(rs.q);
    free(rs.bd);
    for (size_t i = 0; i < n_products; i++)
        cutout_free(&rs.cuts[i]);
    vips_thread_shutdown();
    return rc;
}

/* ---- provider ops ---- */

typedef struct local_progress {
    provider_job *job;
    int index, count;
} local_progress;

static void local_on_progress(void *ctx, int pct)
{
    local_progress *lp = ctx;
    if (lp->job->on_progress) lp->job->on_progress(lp->job, (lp->index * 100 + pct) / lp->count);
}

static int local_start(provider_job *job)
{
    const gen_record *g = job->gen;
    int n = job->model && job->model->outputs > 0 ? job->model->outputs : 1;
    provider_image *outs = xcalloc((size_t)n, sizeof *outs);
    char *error = NULL;
    int rc = PROVIDER_OK;
    for (int i = 0; i < n; i++) {
        local_progress lp = {.job = job, .index = i, .count = n};
        rc = provider_local_render(&g->params, job->products, job->n_products, job->models,
                                   job->n_models, i, &job->cancel_requested, local_on_progress, &lp,
                                   &outs[i], &error);
        if (rc != PROVIDER_OK) break;
        if (atomic_load(&job->cancel_requested)) {
            rc = PROVIDER_CANCELLED;
            break;
        }
    }
    if (rc == PROVIDER_OK) {
        job->on_done(job, PROVIDER_OK, outs, (size_t)n, NULL);
    } else {
        for (int i = 0; i < n; i++)
            provider_image_free(&outs[i]);
        free(outs);
        job->on_done(job, rc, NULL, 0, error ? error : "cancelled");
    }
    free(error);
    return 0;
}

static void local_cancel(provider_job *job)
{
    /* The flag (set by provider_cancel) is all a local render needs: it is
     * polled between steps and inside the encode. */
    (void)job;
}

const provider_ops provider_local_ops = {
    .name = "local",
    .start = local_start,
    .cancel = local_cancel,
};
