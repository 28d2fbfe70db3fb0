/*
 * provider_local — `local-studio`, the built-in offline compositor (SPEC §7).
 *
 * Not a neural model: it cuts each product out of a plain background,
 * arranges the cut-outs at the requested aspect ratio and composes them on
 * a backdrop that follows the style and the prompt, or onto the model photo
 * when one is given. One function per phase:
 *
 *   cut_out_products  decode (libvips shrink-on-load, 3/4 of the output's
 *                     long side) and matte (provider_local_cutout.c, matte.c)
 *   plan              the look (provider_local_look.c: palette, light,
 *                     grade, texture from the style, the prompt's words and
 *                     the seed) and the arrangement (placement.c)
 *   build_base        the style backdrop with contact shadows attached to
 *                     each product's footprint, or the model photo (with
 *                     a person found: the style's backdrop behind the
 *                     person, contact shadow at the feet), or a
 *                     transparent canvas (background "transparent")
 *   add_shadows       silhouette shadows from the matte, drawn at 1/qscale
 *                     (finer for high quality), blurred, multiplied in
 *   composite_products  the cut-outs over the base; worn on the model, a
 *                     garment first takes the light of the body beneath it
 *                     and covers the model's own top where it would leave
 *                     it showing (provider_local_worn.c)
 *   grade             neutral light and vignette (artistic: dramatic), so a
 *                     product keeps its own colours
 *   encode            JPEG, PNG or WebP (output_format), with alpha for a
 *                     transparent cut-out; effort and quality by quality
 *
 * Quality: low 1024 px on the long side, medium and auto 1600 (what
 * marketplaces ask for zoom: Amazon zooms from 1000 px and recommends 1600,
 * and 1600 keeps a render near 200 ms of one core), high 2048 with shadows
 * drawn at twice the resolution; the encode's quality and effort rise with
 * it.
 *
 * Everything random comes from a splitmix64 stream seeded by the seed, the
 * variant and the style, and every step is deterministic, so the same
 * input, seed, prompt and variant give byte-identical output.
 *
 * DESIGN (threads). libvips is initialised once (pthread_once); after that
 * it may be used from any number of threads at once. Each render builds its
 * own pipeline, owns all its buffers, and ends with vips_thread_shutdown()
 * to free the calling thread's libvips per-thread state. The libvips
 * operation cache is disabled: the inputs are new images every time, so it
 * would only hold memory. A render runs on the calling (worker) thread;
 * libvips fans the pixel work of the final encode out over its own pool.
 * Cancellation is checked between phases, and during the encode through the
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
#include "matte.h"
#include "placement.h"
#include "provider_local.h"
#include "util.h"

#define MAX_PRODUCTS 5

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

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* ---- output size ---- */

/* What a quality asks of a render. */
typedef struct quality_profile {
    int long_side;   /* output pixels */
    int jpeg_q;      /* JPEG and WebP quality */
    bool optimize;   /* JPEG: optimised Huffman tables */
    int png_level;   /* PNG: zlib level */
    int webp_effort; /* WebP: 0..6 */
    int qscale;      /* shadow masks at 1/qscale */
} quality_profile;

static quality_profile quality_for(const char *quality)
{
    if (str_eq(quality, "high")) return (quality_profile){2048, 92, true, 6, 4, 2};
    if (str_eq(quality, "low")) return (quality_profile){1024, 82, false, 2, 0, 4};
    if (str_eq(quality, "medium")) return (quality_profile){1600, 86, false, 4, 2, 4};
    return (quality_profile){1600, 90, true, 6, 3, 4}; /* auto */
}

void provider_local_size(const char *aspect_ratio, const char *quality, int *width, int *height)
{
    int aw = 1, ah = 1;
    if (aspect_ratio && sscanf(aspect_ratio, "%d:%d", &aw, &ah) != 2) aw = ah = 1;
    if (aw <= 0 || ah <= 0 || aw > 100 || ah > 100) aw = ah = 1;
    int long_side = quality_for(quality).long_side;
    if (aw >= ah) {
        *width = long_side;
        *height = (int)lround((double)long_side * ah / aw);
    } else {
        *height = long_side;
        *width = (int)lround((double)long_side * aw / ah);
    }
}

typedef struct placed {
    const cutout *c;
    int x, y, w, h; /* in output pixels */
    int kind;       /* worn on the model: its enum placement_kind; else -1 */
} placed;

/* ---- shadows ---- */

static float sample_alpha(const cutout *c, double u, double v)
{
    if (u < 0 || v < 0 || u >= 1 || v >= 1) return 0;
    int x = (int)(u * c->w), y = (int)(v * c->h);
    return c->alpha[(size_t)y * c->w + x];
}

enum shadow_kind { SHADOW_DROP, SHADOW_FLOOR };

/* Adds one product's silhouette shadow (from its matte) to the mask q,
 * drawn at 1/qs resolution; the product's rows above canvas row clip_y
 * (trousers under the model's top) cast none.
 * DROP: the silhouette moved by (dx, dy). FLOOR: the silhouette flipped
 * down onto the floor from its base, squashed to `k` of its height and
 * sheared by `skew`, fading with distance. */
static void shadow_add(float *q, int qw, int qh, int qs, const placed *p, enum shadow_kind kind,
                       double dx, double dy, double k, double skew, float weight, double clip_y)
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
    int qx0 = (int)floor(x0 / qs) - 1, qx1 = (int)ceil(x1 / qs) + 1;
    int qy0 = (int)floor(y0 / qs) - 1, qy1 = (int)ceil(y1 / qs) + 1;
    if (qx0 < 0) qx0 = 0;
    if (qy0 < 0) qy0 = 0;
    if (qx1 > qw) qx1 = qw;
    if (qy1 > qh) qy1 = qh;
    for (int qy = qy0; qy < qy1; qy++)
        for (int qx = qx0; qx < qx1; qx++) {
            double X = (qx + 0.5) * qs, Y = (qy + 0.5) * qs;
            float v;
            if (kind == SHADOW_DROP) {
                if (Y - dy < clip_y) continue;
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

/* Blurs the reduced-resolution mask q (qw×qh) in place by sigma (in q's
 * pixels) with libvips. -1 on a libvips failure. */
static int blur_mask(float *q, int qw, int qh, double sigma)
{
    VipsImage *ctx = vips_image_new();
    VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(ctx), 3);
    int rc = -1;
    t[0] = vips_image_new_from_memory(q, (size_t)qw * qh * sizeof *q, qw, qh, 1, VIPS_FORMAT_FLOAT);
    if (!t[0] || vips_gaussblur(t[0], &t[1], sigma, "min_ampl", 0.01, NULL) ||
        vips_cast_float(t[1], &t[2], NULL))
        goto cleanup;
    size_t size;
    float *out = vips_image_write_to_memory(t[2], &size);
    if (!out) goto cleanup;
    if (size == (size_t)qw * qh * sizeof *q) {
        memcpy(q, out, size);
        rc = 0;
    }
    g_free(out);
cleanup:
    g_object_unref(ctx);
    return rc;
}

/* Bilinear sample at output pixel (x, y) of a gw×gh grid g (gw, gh ≥ 2)
 * whose cells are `step` output pixels, cell centres at (i + ½)·step. */
static inline float grid_at(const float *g, int gw, int gh, int step, int x, int y)
{
    float fx = (x + 0.5f) / step - 0.5f, fy = (y + 0.5f) / step - 0.5f;
    if (fx < 0) fx = 0;
    if (fy < 0) fy = 0;
    int x0 = (int)fx, y0 = (int)fy;
    if (x0 > gw - 2) x0 = gw - 2;
    if (y0 > gh - 2) y0 = gh - 2;
    float tx = fx - x0, ty = fy - y0;
    if (tx > 1) tx = 1;
    if (ty > 1) ty = 1;
    const float *r0 = g + (size_t)y0 * gw + x0, *r1 = r0 + gw;
    float top = r0[0] + (r0[1] - r0[0]) * tx, bot = r1[0] + (r1[1] - r1[0]) * tx;
    return top + (bot - top) * ty;
}

/* Multiplies the RGB of a w×h canvas (nb bytes a pixel) by 1 - opacity ×
 * mask, the mask a gw×gh grid of cell `step`, over the output rectangle
 * [x0, x1) × [y0, y1) only; elsewhere, and where the mask is 0, pixels stay
 * exactly as they are. */
static void shade_canvas(unsigned char *cv, int w, int h, int nb, const float *g, int gw, int gh,
                         int step, float opacity, int x0, int y0, int x1, int y1)
{
    if (gw < 2 || gh < 2) return;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > w) x1 = w;
    if (y1 > h) y1 = h;
    for (int y = y0; y < y1; y++) {
        unsigned char *row = cv + (size_t)y * w * nb;
        for (int x = x0; x < x1; x++) {
            float m = grid_at(g, gw, gh, step, x, y);
            if (m <= 0) continue;
            float f = 1 - opacity * m;
            unsigned char *px = row + (size_t)x * nb;
            for (int c = 0; c < 3; c++)
                px[c] = (unsigned char)lrintf(px[c] * f);
        }
    }
}

/* Multiplies a w×h canvas by a smooth light map (a directional light and a
 * vignette), one factor for all three channels: whatever it falls on keeps
 * its hue. Computed on an 8 px grid and interpolated. */
static void light_canvas(unsigned char *cv, int w, int h, int nb, double angle, double directional,
                         double vignette)
{
    enum { LQ = 8 };
    int gw = w / LQ + 2, gh = h / LQ + 2;
    float *g = xmalloc((size_t)gw * gh * sizeof *g);
    double span = fmax(w, h), dx = cos(angle), dy = sin(angle);
    double half_diag2 = 0.25 * ((double)w * w + (double)h * h) / (span * span);
    for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw; x++) {
            double cx = ((x + 0.5) * LQ - w / 2.0) / span, cy = ((y + 0.5) * LQ - h / 2.0) / span;
            double r2 = (cx * cx + cy * cy) / half_diag2;
            double l = 1 + directional * (cx * dx + cy * dy) * 1.4;
            l *= 1 - vignette * pow(r2, 1.3);
            g[(size_t)y * gw + x] = (float)l;
        }
    for (int y = 0; y < h; y++) {
        unsigned char *row = cv + (size_t)y * w * nb;
        for (int x = 0; x < w; x++) {
            float f = grid_at(g, gw, gh, LQ, x, y);
            unsigned char *px = row + (size_t)x * nb;
            for (int c = 0; c < 3; c++) {
                float v = px[c] * f + 0.5f;
                px[c] = (unsigned char)(v > 255 ? 255 : v < 0 ? 0 : v);
            }
        }
    }
    free(g);
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

/* The intermediate images one render can hold: a fixed part and a few per
 * product (composite_products takes 5 each). next_slot checks the bound. */
#define RENDER_SLOTS (24 + 6 * MAX_PRODUCTS)

/* One render's state, handed from phase to phase. The picture is one
 * canvas in memory (rs->cv) that the phases paint in place — backdrop,
 * shadows, products, light — so no full-frame float pipeline runs; libvips
 * decodes, resizes the cut-outs, blurs the small shadow mask and encodes.
 * rs->ctx owns every intermediate image (see next_slot); rs->cuts, rs->cv
 * and rs->q own their buffers. All are released by provider_local_render,
 * whatever the outcome. */
typedef struct render_state {
    const gen_params *p;
    int variant;
    size_t n_products;
    int W, H;           /* output size */
    double m;           /* the short side (box and shadow sizes) */
    quality_profile qp; /* size, encode and shadow resolution by quality */
    int kind;           /* 0 realistic, 1 artistic, 2 minimal */
    bool on_model;      /* composed onto a model photo */
    bool dressed;       /* on a model photo, the products are worn (a person was found) */
    bool transparent;   /* background "transparent": the cut-out alone, with alpha */
    look_words words;   /* what the custom prompt asks */
    eval_ctx ev;
    char **error; /* the caller's: set on failure (caller frees) */
    VipsImage *ctx;
    VipsImage **t; /* ctx's local array of RENDER_SLOTS images */
    int ti;        /* its next free slot */
    cutout cuts[MAX_PRODUCTS];
    placed pl[MAX_PRODUCTS];
    style_plan sp;
    int hero;           /* seed-picked: the product drawn a little larger, */
    double fill;        /* how much of its box the group fills (0..1), */
    double shift;       /* and its sideways shift (-1..1) */
    unsigned char *cv;  /* the picture so far: W×H×nb bytes, sRGB (straight alpha) */
    int nb;             /* 3, or 4 for a transparent cut-out */
    float *q;           /* the shadow mask (add_shadows) */
    worn_person person; /* on a model photo: the person found (place_on_model) */
    unsigned char *bd;  /* with the person found: the style backdrop behind them */
} render_state;

/* A slot for one intermediate image: what is stored there is unreffed
 * with rs->ctx. Running out is a bug in this file (RENDER_SLOTS is too
 * small for the phases' needs): it aborts rather than write past the
 * array. */
static VipsImage **next_slot(render_state *rs)
{
    if (rs->ti >= RENDER_SLOTS) {
        log_error("local-studio: more than %d intermediate images", RENDER_SLOTS);
        abort();
    }
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

/* Phase 2 (45 %): the look (palette, light, grade; provider_local_look.c)
 * and the composition (hero, fill, shift), then the placement
 * (placement.c). The draws from r come in a fixed order: changing it
 * changes every render. */
static int plan(render_state *rs, rng *r)
{
    size_t n = rs->n_products;
    double prod_mean[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            prod_mean[c] += rs->cuts[i].mean[c] / n;
    look_plan(&rs->sp, rs->kind, prod_mean, &rs->words, r);
    rs->hero = (int)((size_t)(rs->variant + (int)(rng_next(r) % 5)) % n);
    rs->fill = rng_range(r, 0.0, 1.0);
    rs->shift = rng_range(r, -1, 1);

    placement_req q = {
        .W = rs->W,
        .H = rs->H,
        .style = rs->transparent ? 2 : rs->kind,
        .on_model = rs->on_model && !rs->transparent,
        .n = n,
        .hero = rs->hero,
        .fill = rs->fill,
        .shift = rs->shift,
    };
    for (size_t i = 0; i < n; i++) {
        const cutout *c = &rs->cuts[i];
        q.aspect[i] = (double)c->w / c->h;
        q.small[i] = placement_kind_of(c->alpha, c->w, c->h) == PLACEMENT_ACCESSORY;
    }
    placement_rect pr[PLACEMENT_MAX];
    placement_arrange(&q, pr, &rs->sp.floor_y);
    for (size_t i = 0; i < n; i++)
        rs->pl[i] = (placed){&rs->cuts[i], pr[i].x, pr[i].y, pr[i].w, pr[i].h, -1};
    return checkpoint(rs, 45);
}

/* Whether the model photo mi would lose more than 8% of its height to a
 * cover crop into the frame (a portrait photo in a square or landscape
 * frame: the head or the feet cut, and the body's proportions no longer
 * those of a standing figure). */
static bool model_fits_inside(render_state *rs, const provider_image *mi)
{
    VipsImage **hd = next_slot(rs);
    *hd = vips_image_new_from_buffer(mi->data, mi->len, "", NULL);
    if (!*hd) {
        vips_error_clear();
        return false;
    }
    double photo = (double)(*hd)->Xsize / (*hd)->Ysize, frame = (double)rs->W / rs->H;
    return photo / frame < 0.92;
}

/* Phase 3 on a model photo: the photo the variant picks as the canvas,
 * cover-cropped to the frame, or (inside) fitted inside it, centred, its
 * edges extended to the frame's sides — the whole figure stays, and the
 * backdrop behind it is replaced when the person is found. */
static int base_from_model(render_state *rs, const provider_image *models, size_t n_models,
                           bool inside)
{
    int W = rs->W, H = rs->H;
    const provider_image *mi = &models[(size_t)rs->variant % n_models];
    VipsImage **th = next_slot(rs), **cs = next_slot(rs), **u = next_slot(rs);
    if (vips_thumbnail_buffer(mi->data, mi->len, th, W, "height", H, "crop",
                              inside ? VIPS_INTERESTING_NONE : VIPS_INTERESTING_ATTENTION, "size",
                              VIPS_SIZE_BOTH, NULL) ||
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
    if (inside && (base->Xsize < W || base->Ysize < H)) {
        VipsImage **em = next_slot(rs);
        if (vips_embed(base, em, (W - base->Xsize) / 2, (H - base->Ysize) / 2, W, H, "extend",
                       VIPS_EXTEND_COPY, NULL))
            return render_vips_failed(rs);
        base = *em;
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
    size_t size;
    rs->cv = vips_image_write_to_memory(base, &size);
    if (!rs->cv || size != (size_t)W * H * 3) return render_vips_failed(rs);
    rs->nb = 3;
    return PROVIDER_OK;
}

/* The contact shadows of the placed products: soft ellipses attached to
 * each product's footprint (the columns its matte covers in its bottom
 * rows), so a product stands on the floor instead of floating. */
static size_t contacts(const render_state *rs, contact *cts)
{
    size_t ncts = 0;
    for (size_t i = 0; i < rs->n_products; i++) {
        const placed *pp = &rs->pl[i];
        double fx0 = pp->x + pp->w * pp->c->foot0, fx1 = pp->x + pp->w * pp->c->foot1;
        double fcx = (fx0 + fx1) / 2, frx = fmax((fx1 - fx0) / 2, pp->w * 0.15);
        double baseY = pp->y + pp->h;
        double k = 1 + 0.3 * rs->sp.contrast - 0.3;
        if (rs->kind == 0) {
            cts[ncts++] =
                (contact){fcx, baseY - pp->h * 0.004, frx * 1.02, fmax(3, pp->h * 0.018), 0.50 * k};
            cts[ncts++] = (contact){fcx + rs->sp.side * -frx * 0.06, baseY + pp->h * 0.01,
                                    frx * 1.25, fmax(6, pp->h * 0.05), 0.22 * k};
        } else if (rs->kind == 2) {
            /* Minimal: a soft contact shadow just under the base. */
            cts[ncts++] =
                (contact){fcx, baseY + pp->h * 0.006, frx * 1.06, fmax(3, pp->h * 0.016), 0.30};
            cts[ncts++] =
                (contact){fcx, baseY + pp->h * 0.012, frx * 1.30, fmax(5, pp->h * 0.035), 0.10};
        }
    }
    return ncts;
}

/* Phase 3 otherwise: the style backdrop, with contact shadows under the
 * placed products (realistic, minimal), as the canvas. */
static int base_backdrop(render_state *rs)
{
    contact cts[MAX_PRODUCTS * 2];
    size_t ncts = contacts(rs, cts);
    rs->cv = look_backdrop(&rs->sp, rs->W, rs->H, cts, ncts,
                           (uint32_t)rs->p->seed ^ (uint32_t)rs->variant * 7919u);
    rs->nb = 3;
    return PROVIDER_OK;
}

/* Phase 3 for a transparent cut-out: a clear RGBA canvas. */
static int base_transparent(render_state *rs)
{
    rs->cv = xcalloc((size_t)rs->W * rs->H, 4);
    rs->nb = 4;
    return PROVIDER_OK;
}

/* Composition order on a body: what is worn underneath first. */
static int layer_of(enum placement_kind k)
{
    static const int order[] = {
        [PLACEMENT_TROUSERS] = 0, [PLACEMENT_SHOES] = 1, [PLACEMENT_DRESS] = 2,
        [PLACEMENT_TOP] = 3,      [PLACEMENT_HAT] = 4,   [PLACEMENT_ACCESSORY] = 5};
    return order[k];
}

/* Phase 3b on a model photo: finds the person (provider_local_worn.c:
 * the matte of a copy of the photo at ≤ 512 px) and dresses them — each
 * product placed by its kind (placement.c), drawn in layer order. When no
 * person is found the products keep the plan's box placement. */
static void place_on_model(render_state *rs)
{
    if (!worn_find(rs->cv, rs->W, rs->H, &rs->person)) return;
    const placement_body body = rs->person.body;
    int layer[MAX_PRODUCTS];
    for (size_t i = 0; i < rs->n_products; i++) {
        placed *pp = &rs->pl[i];
        enum placement_kind k = placement_kind_of(pp->c->alpha, pp->c->w, pp->c->h);
        placement_rect r = placement_on_body(&body, k, pp->c->alpha, pp->c->w, pp->c->h);
        *pp = (placed){pp->c, r.x, r.y, r.w, r.h, (int)k};
        layer[i] = layer_of(k);
    }
    /* Insertion sort by layer, stable. */
    for (size_t i = 1; i < rs->n_products; i++)
        for (size_t j = i; j > 0 && layer[j - 1] > layer[j]; j--) {
            placed t = rs->pl[j];
            rs->pl[j] = rs->pl[j - 1];
            rs->pl[j - 1] = t;
            int l = layer[j];
            layer[j] = layer[j - 1];
            layer[j - 1] = l;
        }
    rs->dressed = true;
}

/* Phase 3c on a model photo with a person found: the style's backdrop
 * behind the person instead of the photo's (worn_backdrop) — minimal pure
 * white, realistic the studio sweep with its floor at the feet,
 * artistic the graded backdrop (its light comes in grade) — with a soft
 * contact shadow under the feet (realistic, minimal). */
static void restyle_backdrop(render_state *rs)
{
    const placement_body *b = &rs->person.body;
    int hp = b->bottom - b->top;
    double fw = fmax(b->feet_w, b->head_w) / 2;
    contact cts[2];
    size_t ncts = 0;
    if (rs->kind == 0) {
        rs->sp.floor_y = clampd((b->bottom + 0.01 * hp) / rs->H, 0.55, 0.98);
        cts[ncts++] =
            (contact){b->cx, b->bottom - 0.004 * hp, fw * 1.05, fmax(3, hp * 0.012), 0.50};
        cts[ncts++] = (contact){b->cx + rs->sp.side * -fw * 0.08, b->bottom + 0.006 * hp, fw * 1.5,
                                fmax(6, hp * 0.03), 0.24};
    } else if (rs->kind == 2) {
        cts[ncts++] =
            (contact){b->cx, b->bottom + 0.002 * hp, fw * 1.05, fmax(3, hp * 0.010), 0.30};
        cts[ncts++] = (contact){b->cx, b->bottom + 0.008 * hp, fw * 1.4, fmax(5, hp * 0.022), 0.10};
    }
    unsigned char *bd = look_backdrop(&rs->sp, rs->W, rs->H, cts, ncts,
                                      (uint32_t)rs->p->seed ^ (uint32_t)rs->variant * 7919u);
    worn_backdrop(&rs->person, rs->cv, bd, rs->W, rs->H);
    rs->bd = bd;
}

/* Phase 3 (55 %): the base image — the model photo, a style backdrop or a
 * clear canvas. */
static int build_base(render_state *rs, const provider_image *models, size_t n_models)
{
    if (rs->transparent || !rs->on_model) {
        int rc = rs->transparent ? base_transparent(rs) : base_backdrop(rs);
        return rc != PROVIDER_OK ? rc : checkpoint(rs, 55);
    }
    bool inside = model_fits_inside(rs, &models[(size_t)rs->variant % n_models]);
    int rc = base_from_model(rs, models, n_models, inside);
    if (rc != PROVIDER_OK) return rc;
    place_on_model(rs);
    if (!rs->dressed && inside) {
        /* No person found: the photo as it is, cover-cropped, rather than
         * with its edges smeared out to the frame. */
        free(rs->cv);
        rs->cv = NULL;
        if ((rc = base_from_model(rs, models, n_models, false)) != PROVIDER_OK) return rc;
    }
    if (rs->dressed) restyle_backdrop(rs);
    return checkpoint(rs, 55);
}

/* Phase 4 (65 %): the products' silhouette shadows from their mattes,
 * drawn at 1/qscale into the mask rs->q, blurred, and multiplied into the
 * canvas where the mask reaches. The light's side (seed or prompt) sets
 * the shadows' side. */
static int add_shadows(render_state *rs)
{
    if (rs->transparent) return checkpoint(rs, 65);
    int W = rs->W, H = rs->H, kind = rs->kind;
    size_t n_products = rs->n_products;
    double m = rs->m;
    const style_plan *sp = &rs->sp;
    const placed *pl = rs->pl;
    double blur, opacity, dx = 0, dy = 0, k = 0, skew = 0;
    enum shadow_kind sk = SHADOW_DROP;
    double lx = cos(sp->light_angle);
    if (rs->on_model && rs->dressed) {
        /* Worn: a garment lies on the body, a thin soft shadow only. */
        dx = -lx * m * 0.006, dy = m * 0.008, blur = m * 0.010, opacity = 0.25;
    } else if (rs->on_model) {
        dx = -lx * m * 0.018, dy = m * 0.022, blur = m * 0.018, opacity = 0.38;
    } else if (kind == 0) {
        sk = SHADOW_FLOOR, k = 0.16, skew = -lx * 1.2;
        blur = m * 0.014, opacity = 0.20 * sp->contrast;
    } else if (kind == 1) {
        dx = -cos(sp->light_angle) * m * 0.035, dy = -sin(sp->light_angle) * m * 0.035 + m * 0.01;
        blur = m * 0.03, opacity = fmin(0.42 * sp->contrast, 0.7);
    } else {
        /* Minimal: the silhouette barely moved, a faint soft halo under
         * it; the contact shadow (base_backdrop) grounds it. */
        dx = -lx * m * 0.006, dy = m * 0.008, blur = m * 0.014, opacity = 0.10;
    }
    /* The mask needs no finer grid than a sixth of the blur; high quality
     * goes down to 2 px cells (sharper contact), the others 4. */
    int qs = (int)(blur / 6);
    if (qs < rs->qp.qscale) qs = rs->qp.qscale;
    if (qs > 8) qs = 8;
    int qw = (W + qs - 1) / qs, qh = (H + qs - 1) / qs;
    float *q = rs->q = xcalloc((size_t)qw * qh, sizeof *q);
    for (size_t i = 0; i < n_products; i++) {
        bool tucked = rs->dressed && pl[i].kind == PLACEMENT_TROUSERS;
        shadow_add(q, qw, qh, qs, &pl[i], sk, dx, dy, k, skew, 1,
                   tucked ? rs->person.body.top_hem_y : -1e9);
    }
    if (blur_mask(q, qw, qh, fmax(blur / qs, 0.5))) return render_vips_failed(rs);
    /* Only where the blurred mask reaches: elsewhere the canvas stays as
     * it is (minimal's white stays exactly 255). */
    int bx0 = qw, by0 = qh, bx1 = -1, by1 = -1;
    for (int y = 0; y < qh; y++)
        for (int x = 0; x < qw; x++)
            if (q[(size_t)y * qw + x] > 1e-4f) {
                if (x < bx0) bx0 = x;
                if (x > bx1) bx1 = x;
                if (y < by0) by0 = y;
                if (y > by1) by1 = y;
            }
    if (bx1 >= 0)
        shade_canvas(rs->cv, W, H, rs->nb, q, qw, qh, qs, (float)opacity, (bx0 - 1) * qs,
                     (by0 - 1) * qs, (bx1 + 2) * qs, (by1 + 2) * qs);
    return checkpoint(rs, 65);
}

/* Blends a premultiplied RGBA float image p (pw×ph, 0..255) over the canvas
 * at (ox, oy), clipped to it. A 3-band canvas is opaque; a 4-band one has
 * straight alpha. */
static void blend_over(unsigned char *cv, int W, int H, int nb, const float *p, int pw, int ph,
                       int ox, int oy)
{
    for (int y = 0; y < ph; y++) {
        int cy = oy + y;
        if (cy < 0 || cy >= H) continue;
        const float *src = p + (size_t)y * pw * 4;
        unsigned char *row = cv + (size_t)cy * W * nb;
        for (int x = 0; x < pw; x++) {
            int cx = ox + x;
            if (cx < 0 || cx >= W) continue;
            const float *s = src + (size_t)x * 4;
            float a = s[3] / 255.0f;
            if (a <= 0.0f) continue;
            if (a > 1) a = 1;
            unsigned char *d = row + (size_t)cx * nb;
            if (nb == 3) {
                for (int c = 0; c < 3; c++) {
                    float v = s[c] + d[c] * (1 - a) + 0.5f;
                    d[c] = (unsigned char)(v > 255 ? 255 : v < 0 ? 0 : v);
                }
            } else {
                float da = d[3] / 255.0f, oa = a + da * (1 - a);
                for (int c = 0; c < 3; c++) {
                    float v = (s[c] + d[c] * da * (1 - a)) / oa + 0.5f;
                    d[c] = (unsigned char)(v > 255 ? 255 : v < 0 ? 0 : v);
                }
                d[3] = (unsigned char)lrintf(oa * 255);
            }
        }
    }
}

/* Phase 5 (72 %): the products, resized to their places (libvips,
 * Lanczos 3, premultiplied), blended over the canvas. */
static int composite_products(render_state *rs)
{
    for (size_t i = 0; i < rs->n_products; i++) {
        const placed *pp = &rs->pl[i];
        const cutout *c = pp->c;
        VipsImage **im = next_slot(rs), **pm = next_slot(rs), **rz = next_slot(rs),
                  **fl = next_slot(rs);
        *im = vips_image_new_from_memory(c->rgba, (size_t)c->w * c->h * 4, c->w, c->h, 4,
                                         VIPS_FORMAT_UCHAR);
        if (!*im) return render_vips_failed(rs);
        (*im)->Type = VIPS_INTERPRETATION_sRGB;
        if (vips_premultiply(*im, pm, NULL) ||
            vips_resize(*pm, rz, (double)pp->w / c->w, "vscale", (double)pp->h / c->h, "kernel",
                        VIPS_KERNEL_LANCZOS3, NULL) ||
            vips_cast_float(*rz, fl, NULL))
            return render_vips_failed(rs);
        size_t size;
        float *px = vips_image_write_to_memory(*fl, &size);
        if (!px) return render_vips_failed(rs);
        if (rs->dressed && pp->kind >= 0) {
            /* Worn: the garment takes the body's light and covers the
             * model's own top where it would leave it showing; trousers
             * go under it. */
            placement_rect r = {pp->x, pp->y, (*fl)->Xsize, (*fl)->Ysize};
            worn_shade(&rs->person, (enum placement_kind)pp->kind, &r, px, r.w, r.h);
            worn_cover(&rs->person, (enum placement_kind)pp->kind, &r, px, r.w, r.h, rs->cv, rs->W,
                       rs->H);
            worn_tuck(&rs->person, (enum placement_kind)pp->kind, &r, px, r.w, r.h, rs->cv, rs->W,
                      rs->H);
            worn_reveal(&rs->person, (enum placement_kind)pp->kind, &r, px, r.w, r.h, rs->cv,
                        rs->bd, rs->W, rs->H);
        }
        blend_over(rs->cv, rs->W, rs->H, rs->nb, px, (*fl)->Xsize, (*fl)->Ysize, pp->x, pp->y);
        g_free(px);
    }
    return checkpoint(rs, 72);
}

/* Phase 6 (80 %): neutral light over the whole picture — artistic: the
 * dramatic directional light and vignette (on a model too); on a model
 * photo kept as it is (no person found): a vignette, minimal lifted. The light is one factor for
 * all three channels, so a product takes the light but keeps its hue (the artistic colour grade
 * lives in its backdrop). */
static int grade(render_state *rs)
{
    int W = rs->W, H = rs->H, kind = rs->kind;
    const style_plan *sp = &rs->sp;
    if (rs->transparent) return checkpoint(rs, 80);
    if (kind == 1 && (!rs->on_model || rs->dressed)) {
        light_canvas(rs->cv, W, H, rs->nb, sp->light_angle + M_PI, 0.10 * sp->contrast,
                     fmin(0.30 * sp->vignette, 0.6));
    } else if (rs->dressed) {
        /* On the style's own backdrop (restyle_backdrop): realistic's
         * sweep has its light already, minimal stays pure white. */
    } else if (rs->on_model) {
        light_canvas(rs->cv, W, H, rs->nb, 0, 0, kind == 0 ? 0.16 : 0.10);
        if (kind == 2) {
            /* Minimal on a photo: lifted, slightly airy. */
            size_t n = (size_t)W * H * rs->nb;
            for (size_t i = 0; i < n; i++)
                rs->cv[i] = (unsigned char)lrintf(fminf(rs->cv[i] * 0.90f + 24, 255));
        }
    }
    return checkpoint(rs, 80);
}

/* The output format: parameters.output_format, else PNG for a transparent
 * cut-out (JPEG has no alpha), else JPEG. */
static const char *output_format(const render_state *rs)
{
    const char *f = rs->p->output_format;
    if (str_eq(f, "png") || str_eq(f, "webp")) return f;
    return rs->transparent ? "png" : "jpeg";
}

/* Phase 7 (80–100 %): runs the pipeline into the output format in *out,
 * which then owns the data (the caller frees it with provider_image_free).
 * A cancel during the encode kills the pipeline through the "eval" signal. */
static int encode(render_state *rs, provider_image *out)
{
    VipsImage **fin = next_slot(rs);
    *fin = vips_image_new_from_memory(rs->cv, (size_t)rs->W * rs->H * rs->nb, rs->W, rs->H, rs->nb,
                                      VIPS_FORMAT_UCHAR);
    if (!*fin) return render_vips_failed(rs);
    (*fin)->Type = VIPS_INTERPRETATION_sRGB;
    vips_image_set_progress(*fin, TRUE);
    g_signal_connect(*fin, "eval", G_CALLBACK(on_eval), &rs->ev);
    void *data = NULL;
    size_t len = 0;
    const char *fmt = output_format(rs);
    const quality_profile *qp = &rs->qp;
    int bad;
    if (str_eq(fmt, "png"))
        bad = vips_pngsave_buffer(*fin, &data, &len, "compression", qp->png_level, "strip", TRUE,
                                  NULL);
    else if (str_eq(fmt, "webp"))
        bad = vips_webpsave_buffer(*fin, &data, &len, "Q", qp->jpeg_q, "effort", qp->webp_effort,
                                   "strip", TRUE, NULL);
    else
        bad = vips_jpegsave_buffer(*fin, &data, &len, "Q", qp->jpeg_q, "strip", TRUE,
                                   "optimize_coding", qp->optimize, "subsample_mode",
                                   VIPS_FOREIGN_SUBSAMPLE_OFF, NULL);
    if (bad) return cancelled(&rs->ev) ? render_cancelled(rs) : render_vips_failed(rs);
    if (cancelled(&rs->ev)) {
        g_free(data);
        return render_cancelled(rs);
    }
    /* GLib ≥ 2.46 allocates with malloc, so free() (provider_image_free)
     * is the right release for this buffer. */
    out->data = data;
    out->len = len;
    snprintf(out->format, sizeof out->format, "%s", fmt);
    out->width = rs->W;
    out->height = rs->H;
    report(&rs->ev, 100);
    return PROVIDER_OK;
}

int provider_local_render(const gen_params *p, const char *prompt, const provider_image *products,
                          size_t n_products, const provider_image *models, size_t n_models,
                          int variant, const atomic_bool *cancel,
                          void (*progress)(void *ctx, int pct), void *progress_ctx,
                          provider_image *out, char **error)
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
        .qp = quality_for(p->quality),
        .kind = str_eq(style, "artistic")  ? 1
                : str_eq(style, "minimal") ? 2
                                           : 0,
        .on_model = n_models > 0,
        .transparent = str_eq(p->background, "transparent"),
        .ev = {.cancel = cancel, .progress = progress, .progress_ctx = progress_ctx, .last = -1},
        .error = error,
    };
    look_words_parse(prompt, &rs.words);
    provider_local_size(p->aspect_ratio, p->quality, &rs.W, &rs.H);
    rs.m = fmin(rs.W, rs.H);
    rng r = {.s = hash_str(0xCBF29CE484222325ull, style) ^
                  ((uint64_t)p->seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(variant + 1) << 40)};
    rng_next(&r);
    /* From here on rs.ctx (every intermediate image), rs.cuts, rs.bd and
     * rs.q are held, and released at cleanup. */
    rs.ctx = vips_image_new();
    rs.t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(rs.ctx), RENDER_SLOTS);
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
    free(rs.cv);
    free(rs.bd);
    worn_free(&rs.person);
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
        rc = provider_local_render(&g->params, g->custom_prompt, job->products, job->n_products,
                                   job->models, job->n_models, i, &job->cancel_requested,
                                   local_on_progress, &lp, &outs[i], &error);
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
