/*
 * Unit tests for the model registry (provider.c) and the local-studio
 * compositor (provider_local*.c): sizes for every aspect ratio and quality,
 * determinism, model photos, several products, cancellation, the job API;
 * minimal's pure white, artistic's true product colours, the prompt's words
 * and the quality changing the image, transparent cut-outs with alpha.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "placement.h"
#include "provider.h"
#include "provider_local.h"
#include "util.h"

#include "image_fixture.h"

static gen_params params(const char *style, const char *aspect, const char *quality, int64_t seed)
{
    gen_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "local-studio");
    snprintf(p.style, sizeof p.style, "%s", style);
    snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "%s", aspect);
    snprintf(p.quality, sizeof p.quality, "%s", quality);
    p.guidance_scale = 7.5;
    p.num_inference_steps = 50;
    p.strength = 0.8;
    p.seed = seed;
    return p;
}

/* Renders and checks the basics; the caller frees *out. */
static void render_ok(const gen_params *p, const provider_image *prods, size_t np,
                      const provider_image *models, size_t nm, int variant, provider_image *out)
{
    char *err = NULL;
    int rc =
        provider_local_render(p, NULL, prods, np, models, nm, variant, NULL, NULL, NULL, out, &err);
    cr_assert_eq(rc, PROVIDER_OK, "render failed: %s", err ? err : "?");
    cr_assert_null(err);
    cr_assert_not_null(out->data);
    cr_assert_gt(out->len, 1000);
    cr_assert_str_eq(out->format, "jpeg");
}

/* Decodes an output and returns its size. */
static void decoded_size(const provider_image *img, int *w, int *h)
{
    VipsImage *im = vips_image_new_from_buffer(img->data, img->len, "", NULL);
    cr_assert_not_null(im, "output does not decode");
    *w = im->Xsize;
    *h = im->Ysize;
    g_object_unref(im);
}

Test(registry, models_and_availability)
{
    const model_info *list;
    size_t n = provider_models(&list);
    cr_assert_geq(n, 3);
    const model_info *local = provider_model_find("local-studio");
    cr_assert_not_null(local);
    cr_assert_str_eq(local->provider, "local");
    cr_assert_eq(local->base_cost, 1);
    cr_assert_eq(local->max_product_images, 5);
    cr_assert_eq(local->max_model_images, 3);
    cr_assert_eq(local->outputs, 2);
    unsetenv("OPENAI_API_KEY");
    unsetenv("REPLICATE_API_TOKEN");
    provider_secrets_load();
    const char *why = "x";
    cr_assert(provider_model_available(local, &why));
    cr_assert_null(why);
    cr_assert_eq(provider_for(local), &provider_local_ops);

    const model_info *gpt = provider_model_find("gpt-image-1");
    cr_assert_not_null(gpt);
    cr_assert_str_eq(gpt->provider, "openai");
    cr_assert_eq(gpt->base_cost, 3);
    cr_assert_not(provider_model_available(gpt, &why));
    cr_assert_str_eq(why, "OPENAI_API_KEY is not set on this server");
    cr_assert_null(provider_for(gpt));

    const model_info *rep = provider_model_find("flux-kontext-pro");
    cr_assert_not_null(rep);
    cr_assert_str_eq(rep->provider, "replicate");
    cr_assert_not(provider_model_available(rep, &why));
    cr_assert_str_eq(why, "REPLICATE_API_TOKEN is not set on this server");
    cr_assert_null(provider_model_find("nope"));
    cr_assert_null(provider_model_find(NULL));
}

Test(local, size_table)
{
    static const struct {
        const char *ar;
        int lw, lh, w, h, hw, hh; /* low, auto/medium, high */
    } want[] = {
        {"1:1", 1024, 1024, 1600, 1600, 2048, 2048}, {"16:9", 1024, 576, 1600, 900, 2048, 1152},
        {"9:16", 576, 1024, 900, 1600, 1152, 2048},  {"3:2", 1024, 683, 1600, 1067, 2048, 1365},
        {"2:3", 683, 1024, 1067, 1600, 1365, 2048},  {"4:3", 1024, 768, 1600, 1200, 2048, 1536},
        {"3:4", 768, 1024, 1200, 1600, 1536, 2048},  {"4:5", 819, 1024, 1280, 1600, 1638, 2048},
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        int w, h;
        provider_local_size(want[i].ar, "low", &w, &h);
        cr_expect(w == want[i].lw && h == want[i].lh, "%s low: %dx%d", want[i].ar, w, h);
        provider_local_size(want[i].ar, "auto", &w, &h);
        cr_expect(w == want[i].w && h == want[i].h, "%s: %dx%d", want[i].ar, w, h);
        provider_local_size(want[i].ar, "medium", &w, &h);
        cr_expect(w == want[i].w && h == want[i].h, "%s medium: %dx%d", want[i].ar, w, h);
        provider_local_size(want[i].ar, "high", &w, &h);
        cr_expect(w == want[i].hw && h == want[i].hh, "%s high: %dx%d", want[i].ar, w, h);
    }
}

Test(local, renders_every_ratio_and_quality, .timeout = 120)
{
    static const char *ratios[] = {"1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "4:5"};
    static const char *qualities[] = {"low", "high"};
    provider_image prod = load_fixture("product.jpg");
    for (size_t i = 0; i < ARRAY_LEN(ratios); i++)
        for (size_t j = 0; j < ARRAY_LEN(qualities); j++) {
            gen_params p = params(i % 3 == 0   ? "realistic"
                                  : i % 3 == 1 ? "artistic"
                                               : "minimal",
                                  ratios[i], qualities[j], 1000 + (int64_t)i);
            provider_image out = {0};
            render_ok(&p, &prod, 1, NULL, 0, 0, &out);
            int ew, eh, w, h;
            provider_local_size(ratios[i], qualities[j], &ew, &eh);
            decoded_size(&out, &w, &h);
            cr_expect(w == ew && h == eh, "%s %s: got %dx%d, want %dx%d", ratios[i], qualities[j],
                      w, h, ew, eh);
            cr_expect(out.width == ew && out.height == eh);
            provider_image_free(&out);
        }
    free(prod.data);
}

Test(local, deterministic_per_seed_and_variant)
{
    provider_image prod = load_fixture("product.jpg");
    static const char *styles[] = {"realistic", "artistic", "minimal"};
    for (size_t s = 0; s < ARRAY_LEN(styles); s++) {
        gen_params p = params(styles[s], "1:1", "auto", 12345);
        provider_image a = {0}, b = {0}, c = {0}, d = {0};
        render_ok(&p, &prod, 1, NULL, 0, 0, &a);
        render_ok(&p, &prod, 1, NULL, 0, 0, &b);
        cr_assert_eq(a.len, b.len, "%s: same seed, different length", styles[s]);
        cr_assert_eq(memcmp(a.data, b.data, a.len), 0, "%s: same seed, different bytes", styles[s]);
        render_ok(&p, &prod, 1, NULL, 0, 1, &c);
        cr_assert(c.len != a.len || memcmp(a.data, c.data, a.len) != 0,
                  "%s: another variant gave the same image", styles[s]);
        p.seed = 54321;
        render_ok(&p, &prod, 1, NULL, 0, 0, &d);
        cr_assert(d.len != a.len || memcmp(a.data, d.data, a.len) != 0,
                  "%s: another seed gave the same image", styles[s]);
        provider_image_free(&a);
        provider_image_free(&b);
        provider_image_free(&c);
        provider_image_free(&d);
    }
    free(prod.data);
}

Test(local, model_photo_and_several_products)
{
    provider_image prods[2] = {load_fixture("product.jpg"), load_fixture("product2.png")};
    provider_image model = load_fixture("model.jpg");
    gen_params p = params("realistic", "3:4", "auto", 7);
    provider_image a = {0}, b = {0};
    render_ok(&p, prods, 2, &model, 1, 0, &a);
    int w, h;
    decoded_size(&a, &w, &h);
    cr_assert(w == 1200 && h == 1600, "%dx%d", w, h);
    render_ok(&p, prods, 2, &model, 1, 0, &b);
    cr_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
              "model render not deterministic");
    provider_image_free(&a);
    provider_image_free(&b);
    p = params("minimal", "16:9", "auto", 8);
    provider_image five[5] = {prods[0], prods[1], prods[0], prods[1], prods[0]};
    render_ok(&p, five, 5, NULL, 0, 1, &a);
    decoded_size(&a, &w, &h);
    cr_assert(w == 1600 && h == 900, "%dx%d", w, h);
    provider_image_free(&a);
    free(prods[0].data);
    free(prods[1].data);
    free(model.data);
}

Test(local, bad_input_fails_without_retry)
{
    provider_image junk = load_fixture("not-image.txt");
    gen_params p = params("realistic", "1:1", "auto", 1);
    provider_image out = {0};
    char *err = NULL;
    /* An undecodable input is the input's fault; a wrong count is a rejected request. */
    int rc = provider_local_render(&p, NULL, &junk, 1, NULL, 0, 0, NULL, NULL, NULL, &out, &err);
    cr_assert_eq(rc, PROVIDER_INPUT);
    cr_assert_not_null(err);
    cr_assert_null(out.data);
    free(err);
    err = NULL;
    rc = provider_local_render(&p, NULL, &junk, 0, NULL, 0, 0, NULL, NULL, NULL, &out, &err);
    cr_assert_eq(rc, PROVIDER_REJECTED);
    free(err);
    free(junk.data);
}

typedef struct cancel_probe {
    atomic_bool *flag;
    int at;
    int last;
    bool monotonic;
} cancel_probe;

static void cancel_progress(void *ctx, int pct)
{
    cancel_probe *cp = ctx;
    if (pct < cp->last) cp->monotonic = false;
    cp->last = pct;
    if (cp->flag && pct >= cp->at) atomic_store(cp->flag, true);
}

Test(local, cancel_flag_honoured)
{
    provider_image prod = load_fixture("product.jpg");
    gen_params p = params("artistic", "1:1", "high", 3);
    atomic_bool flag;
    atomic_init(&flag, true);
    provider_image out = {0};
    char *err = NULL;
    int rc = provider_local_render(&p, NULL, &prod, 1, NULL, 0, 0, &flag, NULL, NULL, &out, &err);
    cr_assert_eq(rc, PROVIDER_CANCELLED);
    cr_assert_null(out.data);
    free(err);

    /* Cancelled part-way, at each reported step. */
    for (int at = 5; at <= 80; at += 15) {
        atomic_store(&flag, false);
        cancel_probe cp = {.flag = &flag, .at = at, .last = -1, .monotonic = true};
        err = NULL;
        rc = provider_local_render(&p, NULL, &prod, 1, NULL, 0, 0, &flag, cancel_progress, &cp,
                                   &out, &err);
        cr_assert_eq(rc, PROVIDER_CANCELLED, "not cancelled at %d%%", at);
        cr_assert_null(out.data);
        free(err);
    }

    /* Not cancelled: progress rises to 100. */
    atomic_store(&flag, false);
    cancel_probe cp = {.flag = NULL, .last = -1, .monotonic = true};
    err = NULL;
    rc = provider_local_render(&p, NULL, &prod, 1, NULL, 0, 0, &flag, cancel_progress, &cp, &out,
                               &err);
    cr_assert_eq(rc, PROVIDER_OK);
    cr_assert(cp.monotonic);
    cr_assert_eq(cp.last, 100);
    provider_image_free(&out);
    free(prod.data);
}

typedef struct job_result {
    int done_calls, result, last_progress;
    size_t n;
    bool monotonic;
} job_result;

static void job_progress(provider_job *job, int pct)
{
    job_result *r = job->owner;
    if (pct < r->last_progress) r->monotonic = false;
    r->last_progress = pct;
}

static void job_done(provider_job *job, int result, provider_image *outputs, size_t n,
                     const char *error)
{
    job_result *r = job->owner;
    r->done_calls++;
    r->result = result;
    r->n = n;
    if (result == PROVIDER_OK) {
        cr_assert_null(error);
        for (size_t i = 0; i < n; i++) {
            cr_assert_not_null(outputs[i].data);
            provider_image_free(&outputs[i]);
        }
        free(outputs);
    } else {
        cr_assert_null(outputs);
        cr_assert_not_null(error);
    }
}

static gen_record *record(const char *style)
{
    gen_record *g = xcalloc(1, sizeof *g);
    g->params = params(style, "4:5", "auto", 99);
    return g;
}

Test(local, job_api_renders_outputs)
{
    provider_image prod = load_fixture("product2.png");
    const model_info *m = provider_model_find("local-studio");
    gen_record *g = record("minimal");
    job_result r = {.last_progress = -1, .monotonic = true};
    provider_job job;
    memset(&job, 0, sizeof job);
    job.gen = g;
    job.model = m;
    job.products = &prod;
    job.n_products = 1;
    job.on_progress = job_progress;
    job.on_done = job_done;
    job.owner = &r;
    atomic_init(&job.cancel_requested, false);
    const provider_ops *ops = provider_for(m);
    cr_assert_eq(ops->start(&job), 0);
    cr_assert_eq(r.done_calls, 1);
    cr_assert_eq(r.result, PROVIDER_OK);
    cr_assert_eq(r.n, (size_t)m->outputs);
    cr_assert(r.monotonic);
    cr_assert_eq(r.last_progress, 100);

    /* Cancelled before start: on_done once, with PROVIDER_CANCELLED. */
    r = (job_result){.last_progress = -1, .monotonic = true};
    provider_cancel(ops, &job);
    cr_assert(atomic_load(&job.cancel_requested));
    cr_assert_eq(ops->start(&job), 0);
    cr_assert_eq(r.done_calls, 1);
    cr_assert_eq(r.result, PROVIDER_CANCELLED);
    free(g);
    free(prod.data);
}

/* ---- styles, prompt, quality, transparent output ---- */

/* Renders with a prompt, background and format; the caller frees *out. */
static void render_with(const gen_params *p, const char *prompt, const provider_image *prods,
                        size_t np, provider_image *out)
{
    char *err = NULL;
    int rc = provider_local_render(p, prompt, prods, np, NULL, 0, 0, NULL, NULL, NULL, out, &err);
    cr_assert_eq(rc, PROVIDER_OK, "render failed: %s", err ? err : "?");
    cr_assert_not_null(out->data);
}

static bool same(const provider_image *a, const provider_image *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Decodes an output to 8-bit pixels (caller g_frees), with its size and bands. */
static unsigned char *pixels(const provider_image *img, int *w, int *h, int *bands)
{
    VipsImage *im = vips_image_new_from_buffer(img->data, img->len, "", NULL);
    cr_assert_not_null(im, "output does not decode");
    size_t size;
    unsigned char *px = vips_image_write_to_memory(im, &size);
    *w = im->Xsize;
    *h = im->Ysize;
    *bands = im->Bands;
    g_object_unref(im);
    return px;
}

/* A product photo made here: a flat square of colour fg with a 2 px
 * darker outline, on a plain background bg, as a PNG. */
static provider_image square_photo(const unsigned char fg[3], const unsigned char bg[3])
{
    enum { S = 600 };
    unsigned char *px = xmalloc((size_t)S * S * 3);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            bool in = x >= 120 && x < 480 && y >= 100 && y < 500;
            bool rim = in && (x < 122 || x >= 478 || y < 102 || y >= 498);
            for (int c = 0; c < 3; c++)
                px[((size_t)y * S + x) * 3 + c] = rim ? fg[c] * 3 / 4 : in ? fg[c] : bg[c];
        }
    VipsImage *im = vips_image_new_from_memory(px, (size_t)S * S * 3, S, S, 3, VIPS_FORMAT_UCHAR);
    void *data;
    size_t len;
    cr_assert_eq(vips_pngsave_buffer(im, &data, &len, NULL), 0);
    g_object_unref(im);
    free(px);
    provider_image img = {.data = data, .len = len};
    return img;
}

Test(local, minimal_backdrop_is_pure_white)
{
    provider_image prod = load_fixture("product.jpg");
    for (int seed = 1; seed <= 3; seed++) {
        gen_params p = params("minimal", seed == 2 ? "4:5" : "1:1", "low", seed);
        provider_image out = {0};
        render_with(&p, NULL, &prod, 1, &out);
        int w, h, nb;
        unsigned char *px = pixels(&out, &w, &h, &nb);
        /* The backdrop: a frame of 6% of the short side all round (the
         * products stay inside): every channel of every pixel exactly 255. */
        int fr = (w < h ? w : h) * 6 / 100;
        size_t off = 0, total = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                if (!(x < fr || x >= w - fr || y < fr || y >= h - fr)) continue;
                total++;
                const unsigned char *q = px + ((size_t)y * w + x) * nb;
                off += q[0] != 255 || q[1] != 255 || q[2] != 255;
            }
        cr_expect_eq(off, 0, "seed %d: %zu of %zu backdrop pixels are not #FFFFFF", seed, off,
                     total);
        /* And there is a shadow: some pixel below the middle is shaded. */
        int darkest = 255;
        for (int y = h / 2; y < h - fr; y++)
            for (int x = fr; x < w - fr; x++) {
                const unsigned char *q = px + ((size_t)y * w + x) * nb;
                if (q[0] > 200 && q[1] > 200 && q[2] > 200 && q[0] < darkest) darkest = q[0];
            }
        cr_expect_lt(darkest, 246, "seed %d: no soft shadow (darkest light pixel %d)", seed,
                     darkest);
        g_free(px);
        provider_image_free(&out);
    }
    free(prod.data);
}

/* The chromaticity (r, g, b over their sum) and mean of a patch at the
 * centre of an output. */
static void centre_patch(const provider_image *img, double chroma[3], double *mean)
{
    int w, h, nb;
    unsigned char *px = pixels(img, &w, &h, &nb);
    double s[3] = {0, 0, 0};
    int n = 0;
    for (int y = h / 2 - 20; y < h / 2 + 20; y++)
        for (int x = w / 2 - 20; x < w / 2 + 20; x++, n++)
            for (int c = 0; c < 3; c++)
                s[c] += px[((size_t)y * w + x) * nb + c];
    double sum = s[0] + s[1] + s[2];
    for (int c = 0; c < 3; c++)
        chroma[c] = s[c] / sum;
    *mean = sum / (3.0 * n);
    g_free(px);
}

Test(local, artistic_keeps_product_colours)
{
    static const unsigned char colours[][3] = {{248, 248, 248}, {40, 160, 200}, {200, 40, 50}};
    static const unsigned char bg[3] = {200, 200, 196};
    static const char *prompts[] = {NULL, "warm sunset light", "neon, dramatic", "cool pastel"};
    for (size_t i = 0; i < ARRAY_LEN(colours); i++) {
        provider_image prod = square_photo(colours[i], bg);
        double sum = colours[i][0] + colours[i][1] + colours[i][2];
        for (size_t k = 0; k < ARRAY_LEN(prompts); k++)
            for (int seed = 1; seed <= 4; seed++) {
                gen_params p = params("artistic", "1:1", "low", seed);
                provider_image out = {0};
                render_with(&p, prompts[k], &prod, 1, &out);
                double ch[3], mean;
                centre_patch(&out, ch, &mean);
                double err = 0;
                for (int c = 0; c < 3; c++)
                    err = fmax(err, fabs(ch[c] - colours[i][c] / sum));
                /* The light may change how bright it is, not its hue. */
                cr_expect_lt(err, 0.012, "colour %zu, prompt %s, seed %d: chroma off by %.4f", i,
                             prompts[k] ? prompts[k] : "-", seed, err);
                provider_image_free(&out);
            }
        free(prod.data);
    }
}

Test(local, prompt_and_quality_change_the_image)
{
    provider_image prod = load_fixture("product.jpg");
    static const char *styles[] = {"realistic", "artistic", "minimal"};
    for (size_t s = 0; s < ARRAY_LEN(styles); s++) {
        gen_params p = params(styles[s], "1:1", "low", 77);
        provider_image plain = {0}, unknown = {0}, sunset = {0}, left = {0}, right = {0};
        render_with(&p, NULL, &prod, 1, &plain);
        render_with(&p, "a lovely product, qwerty zzz", &prod, 1, &unknown);
        cr_expect(same(&plain, &unknown), "%s: an unknown prompt changed the image", styles[s]);
        render_with(&p, "warm sunset light, beach mood", &prod, 1, &sunset);
        if (s != 2)
            cr_expect(!same(&plain, &sunset), "%s: the sunset prompt changed nothing", styles[s]);
        render_with(&p, "light from the left", &prod, 1, &left);
        render_with(&p, "light from the right", &prod, 1, &right);
        cr_expect(!same(&left, &right), "%s: the light's side changed nothing", styles[s]);
        provider_image_free(&plain);
        provider_image_free(&unknown);
        provider_image_free(&sunset);
        provider_image_free(&left);
        provider_image_free(&right);

        provider_image a = {0}, m = {0};
        p = params(styles[s], "1:1", "auto", 77);
        render_with(&p, NULL, &prod, 1, &a);
        p = params(styles[s], "1:1", "medium", 77);
        render_with(&p, NULL, &prod, 1, &m);
        cr_expect(!same(&a, &m), "%s: auto and medium gave the same bytes", styles[s]);
        provider_image_free(&a);
        provider_image_free(&m);
    }
    free(prod.data);
}

Test(local, prompt_words)
{
    look_words w;
    look_words_parse("Soft light from the LEFT, marble table", &w);
    cr_expect(w.any);
    cr_expect_eq(w.side, -1);
    cr_expect_lt(w.drama, 0);
    cr_expect_geq(w.setting, 0);
    look_words_parse("warm sunset light, beach mood", &w);
    cr_expect_gt(w.warmth, 0);
    look_words_parse("a blue-sky day, icy", &w);
    cr_expect_lt(w.warmth, 0);
    look_words_parse("lorem ipsum", &w);
    cr_expect_not(w.any);
    cr_expect_eq(w.setting, -1);
    look_words_parse(NULL, &w);
    cr_expect_not(w.any);
}

Test(local, transparent_cutout_with_alpha)
{
    provider_image prod = load_fixture("product.jpg");
    static const char *formats[] = {"png", "webp", ""};
    for (size_t f = 0; f < ARRAY_LEN(formats); f++) {
        gen_params p = params("realistic", "4:5", "low", 5);
        snprintf(p.background, sizeof p.background, "transparent");
        snprintf(p.output_format, sizeof p.output_format, "%s", formats[f]);
        provider_image out = {0};
        render_with(&p, NULL, &prod, 1, &out);
        cr_expect_str_eq(out.format, *formats[f] ? formats[f] : "png");
        int w, h, nb;
        unsigned char *px = pixels(&out, &w, &h, &nb);
        cr_assert_eq(nb, 4, "%s: no alpha channel", out.format);
        cr_expect(w == 819 && h == 1024, "%dx%d", w, h);
        /* Clear corners, a solid middle (the shirt), and no grey fringe:
         * the pixels of partial alpha are the shirt's navy, not the
         * photo's light background. */
        cr_expect_eq(px[3], 0);
        cr_expect_eq(px[((size_t)(h - 1) * w + w - 1) * 4 + 3], 0);
        cr_expect_eq(px[((size_t)(h / 2) * w + w / 2) * 4 + 3], 255);
        size_t edge = 0, light = 0;
        for (size_t i = 0; i < (size_t)w * h; i++) {
            const unsigned char *q = px + i * 4;
            if (q[3] < 40 || q[3] > 215) continue;
            edge++;
            light += q[0] > 150 && q[1] > 150 && q[2] > 150;
        }
        cr_expect_gt(edge, 100);
        cr_expect_lt(light, edge / 20, "%zu of %zu edge pixels are background-light", light, edge);
        g_free(px);
        provider_image_free(&out);
    }
    /* Opaque output in another format. */
    gen_params p = params("minimal", "1:1", "low", 5);
    snprintf(p.output_format, sizeof p.output_format, "webp");
    provider_image out = {0};
    render_with(&p, NULL, &prod, 1, &out);
    cr_expect_str_eq(out.format, "webp");
    int w, h, nb;
    g_free(pixels(&out, &w, &h, &nb));
    cr_expect_eq(nb, 3);
    provider_image_free(&out);
    free(prod.data);
}

/* ---- worn on the model ---- */

/* A person photo made here, 600×800: a grey gradient backdrop; a head
 * (disc), a neck, a cream box top from the shoulder line (y 200) to the
 * hips (y 430) with arms beside it, dark trousers to y 740, black shoes. */
static provider_image person_photo(void)
{
    enum { PW = 600, PH = 800 };
    unsigned char *px = xmalloc((size_t)PW * PH * 3);
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            unsigned char *p = px + ((size_t)y * PW + x) * 3;
            int g = 190 - y * 50 / PH;
            unsigned char c[3] = {(unsigned char)g, (unsigned char)(g + 4),
                                  (unsigned char)(g + 12)};
            double dx = x - 300, dy = y - 130;
            if (dx * dx + dy * dy < 50 * 50) c[0] = 205, c[1] = 160, c[2] = 130; /* head */
            if (x >= 285 && x < 315 && y >= 175 && y < 205) c[0] = 205, c[1] = 160, c[2] = 130;
            if (x >= 210 && x < 390 && y >= 200 && y < 430) c[0] = 234, c[1] = 226, c[2] = 212;
            if (((x >= 182 && x < 210) || (x >= 390 && x < 418)) && y >= 205 && y < 440)
                c[0] = 205, c[1] = 160, c[2] = 130; /* arms */
            if (((x >= 225 && x < 296) || (x >= 304 && x < 375)) && y >= 430 && y < 740)
                c[0] = 52, c[1] = 56, c[2] = 66; /* trousers */
            if (((x >= 215 && x < 296) || (x >= 304 && x < 385)) && y >= 740 && y < 762)
                c[0] = 20, c[1] = 20, c[2] = 22; /* shoes */
            memcpy(p, c, 3);
        }
    VipsImage *im =
        vips_image_new_from_memory(px, (size_t)PW * PH * 3, PW, PH, 3, VIPS_FORMAT_UCHAR);
    void *data;
    size_t len;
    cr_assert_eq(vips_jpegsave_buffer(im, &data, &len, "Q", 90, NULL), 0);
    g_object_unref(im);
    free(px);
    provider_image img = {.data = data, .len = len};
    return img;
}

Test(local, kinds_from_silhouettes)
{
    enum { S = 100 };
    float *a = xcalloc(S * S, sizeof *a);
    /* A T-shirt: sleeves (rows 0-35 full width), body 25..75. */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            a[y * S + x] = (y < 35) || (x >= 25 && x < 75);
    cr_expect_eq(placement_kind_of(a, S, S), PLACEMENT_TOP);
    /* Trousers, 60×100: a waist band, two legs below 40. */
    memset(a, 0, S * S * sizeof *a);
    for (int y = 0; y < 100; y++)
        for (int x = 0; x < 60; x++)
            a[y * 60 + x] = y < 40 || x < 27 || x >= 33;
    cr_expect_eq(placement_kind_of(a, 60, 100), PLACEMENT_TROUSERS);
    /* A cap, 100×45: a dome on a brim. */
    memset(a, 0, S * S * sizeof *a);
    for (int y = 0; y < 45; y++)
        for (int x = 0; x < 100; x++) {
            double dx = (x - 40) / 40.0, dy = (y - 38) / 38.0;
            a[y * 100 + x] = (dx * dx + dy * dy <= 1 && y <= 38) || (y > 36 && x < 98);
        }
    cr_expect_eq(placement_kind_of(a, 100, 45), PLACEMENT_HAT);
    /* Shoes, 100×40: low and flat-topped. */
    for (int i = 0; i < 100 * 40; i++)
        a[i] = 1;
    cr_expect_eq(placement_kind_of(a, 100, 40), PLACEMENT_SHOES);
    /* A pair of sneakers, 100×30, side by side: each low at the toe and
     * high at the ankle, so the top rows are narrow — still shoes. */
    memset(a, 0, S * S * sizeof *a);
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 100; x++) {
            int u = x < 50 ? x : x - 54; /* 4 px between the shoes */
            a[y * 100 + x] = u >= 0 && u < 46 && (y >= 12 || u < 18);
        }
    cr_expect_eq(placement_kind_of(a, 100, 30), PLACEMENT_SHOES);
    /* A dress, 50×100, widening downwards. */
    for (int y = 0; y < 100; y++)
        for (int x = 0; x < 50; x++)
            a[y * 50 + x] = fabs(x - 24.5) < 10 + y * 0.15;
    cr_expect_eq(placement_kind_of(a, 50, 100), PLACEMENT_DRESS);
    free(a);
}

Test(local, worn_on_a_constructed_person)
{
    provider_image person = person_photo();
    provider_image tee = load_fixture("product.jpg"), cap = load_fixture("product2.png");
    provider_image prods[2] = {tee, cap};
    gen_params p = params("realistic", "3:4", "low", 3);
    provider_image out = {0};
    char *err = NULL;
    int rc = provider_local_render(&p, NULL, prods, 2, &person, 1, 0, NULL, NULL, NULL, &out, &err);
    cr_assert_eq(rc, PROVIDER_OK, "%s", err ? err : "");
    int w, h, nb;
    unsigned char *px = pixels(&out, &w, &h, &nb);
    cr_assert(w == 768 && h == 1024);
    /* The photo is 600×800 scaled by 1.28 into the frame. */
    double k = 768.0 / 600;
#define AT(X, Y) (px + ((size_t)lround((Y)*k) * w + (size_t)lround((X)*k)) * nb)
    /* The chest, the waist just above the hips and the shoulders show the
     * tee's navy, not the model's cream top. */
    static const int torso[][2] = {{300, 300}, {240, 260}, {360, 380}, {300, 420}, {230, 215}};
    for (size_t i = 0; i < ARRAY_LEN(torso); i++) {
        const unsigned char *q = AT(torso[i][0], torso[i][1]);
        if (torso[i][1] > 230 && torso[i][1] < 330 && abs(torso[i][0] - 300) < 40) continue;
        cr_expect(q[2] > q[0] + 20 && q[0] < 120, "(%d,%d) is %d,%d,%d: not the tee", torso[i][0],
                  torso[i][1], q[0], q[1], q[2]);
    }
    /* The cap sits on the head: red above the face. */
    const unsigned char *hat = AT(300, 85);
    cr_expect(hat[0] > 150 && hat[1] < 80, "head top is %d,%d,%d: no cap", hat[0], hat[1], hat[2]);
    /* The shins keep the model's trousers: nothing was pasted there. */
    const unsigned char *shin = AT(260, 650);
    cr_expect(shin[0] < 90 && abs(shin[2] - shin[0]) < 30, "shin is %d,%d,%d", shin[0], shin[1],
              shin[2]);
#undef AT
    g_free(px);
    provider_image_free(&out);
    free(person.data);
    free(tee.data);
    free(cap.data);
}
