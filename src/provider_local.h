/*
 * provider_local.h — what the local-studio compositor's files share: the
 * cut-out (provider_local_cutout.c: decode a product photo, matte it with
 * matte.c, trim), the look (provider_local_look.c: style plan from the
 * style, the prompt and the seed; the backdrop), the deterministic random
 * stream and small math helpers. The render itself is in provider_local.c,
 * the arrangement in placement.c, the pixel work of wearing a product on
 * the model in provider_local_worn.c. Included by provider_local*.c only; the
 * public interface is in provider.h.
 */
#ifndef SS_PROVIDER_LOCAL_H
#define SS_PROVIDER_LOCAL_H

#include <stdint.h>

#include "placement.h"
#include "provider.h"

/* A product cut out of its background, trimmed to its bounding box. */
typedef struct cutout {
    int w, h;
    unsigned char *rgba; /* straight alpha, w*h*4 */
    float *alpha;        /* w*h, 0..1 */
    double foot0, foot1; /* footprint (bottom rows) as fractions of w */
    double mean[3];      /* mean colour of the opaque pixels */
} cutout;

/* Decodes an encoded image to 8-bit sRGB, at most max_side on its long
 * side. Returns 0, or -1 with the libvips error buffer set (the caller
 * clears it). On success *px (caller frees with g_free) is w*h*bands
 * bytes, bands 3 or 4. */
int cutout_decode(const provider_image *img, int max_side, unsigned char **px, int *w, int *h,
                  int *bands);

/* Cuts the product out of px (w×h×nb as from cutout_decode; takes
 * ownership and frees it) into *c, which then owns its buffers (release
 * with cutout_free). Never fails: a photo with no plain background becomes
 * a rounded card. */
void cutout_make(unsigned char *px, int w, int h, int nb, cutout *c);

/* Frees c's buffers and zeroes it; a zeroed cutout is fine too. */
void cutout_free(cutout *c);

static inline double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static inline double smoothstep(double e0, double e1, double x)
{
    double t = clampd((x - e0) / (e1 - e0), 0, 1);
    return t * t * (3 - 2 * t);
}

static inline double lerp(double a, double b, double t)
{
    return a + (b - a) * t;
}

/* ---- deterministic randomness: a splitmix64 stream ---- */

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double rng_range(rng *r, double a, double b)
{
    return a + (b - a) * rng_unit(r);
}

/* ---- the look (provider_local_look.c) ---- */

enum { LOOK_TEX_NONE = 0, LOOK_TEX_MARBLE = 1, LOOK_TEX_LINEN = 2 };

/* What the custom prompt asks of the look. */
typedef struct look_words {
    bool any;      /* at least one word was understood */
    int setting;   /* index of a setting (sunset, beach, marble, ...), -1 none */
    int side;      /* light from the left -1, right +1, 0 the seed's */
    double warmth; /* -1 cool .. +1 warm */
    double drama;  /* -1 soft .. +1 dramatic */
} look_words;

/* Reads the words of a prompt (NULL: none) into *lw. */
void look_words_parse(const char *prompt, look_words *lw);

typedef struct style_plan {
    int kind; /* 0 realistic, 1 artistic, 2 minimal */
    double wall[3], floor[3];
    double dark[3], light[3];  /* artistic: the backdrop's duotone */
    double light_x, light_y;   /* key light, normalised */
    double light_angle;        /* directional light, radians */
    double side;               /* -1 light from the left, +1 from the right */
    double floor_y;            /* realistic: normalised y of the floor line */
    double vignette, contrast; /* 1 the style's own; more for a dramatic prompt */
    double warmth;             /* -1..1, already applied to the palette */
    int texture;               /* LOOK_TEX_* */
} style_plan;

/* The style's plan for a product of mean colour prod_mean, steered by the
 * prompt's words; draws from r in a fixed order. */
void look_plan(style_plan *sp, int kind, const double prod_mean[3], const look_words *lw, rng *r);

/* A soft ellipse of shade on the backdrop (a contact shadow). */
typedef struct contact {
    double cx, cy, rx, ry, strength;
} contact;

/* Paints the style backdrop, with contact shadows, into a new w×h×3
 * buffer (caller frees). Minimal is exactly 255 wherever no contact shadow
 * reaches. */
unsigned char *look_backdrop(const style_plan *s, int w, int h, const contact *cts, size_t ncts,
                             uint32_t salt);

/* ---- worn on the model (provider_local_worn.c) ---- */

/* The person in a model photo, at a reduced resolution (1/f of the
 * output's pixels, ≤ 512 px on the long side). */
typedef struct worn_person {
    int sw, sh, f;
    unsigned char *rgb; /* sw×sh×3: the photo, reduced */
    unsigned char *fg;  /* sw×sh×3: the same with the person's edge colours unmixed */
    float *alpha;       /* sw×sh: the person's matte */
    float *bg;          /* bw×bh×4, cells of 4×4: the backdrop's colour around the person */
    int bw, bh;
    placement_body body; /* in output pixels */
} worn_person;

/* Finds the person in the canvas cv (W×H×3, the model photo). true with
 * *wp owning its buffers (release with worn_free); false, *wp zeroed, when
 * the photo has no plain background or no person-like figure. */
bool worn_find(const unsigned char *cv, int W, int H, worn_person *wp);

/* Frees wp's buffers and zeroes it; a zeroed worn_person is fine too. */
void worn_free(worn_person *wp);

/* Gives a garment of kind k placed at r the light of the body beneath it:
 * px is its premultiplied RGBA float image (pw×ph, 0..255) at (r->x,
 * r->y), changed in place. Tops, dresses and trousers only. */
void worn_shade(const worn_person *wp, enum placement_kind k, const placement_rect *r, float *px,
                int pw, int ph);

/* Paints over the model's own top where a top or dress of kind k (px as
 * for worn_shade) leaves it showing, with the garment's colour, on the
 * canvas cv (W×H×3); a dress without shoulders (strappy) only below its
 * waist, beside its skirt. Other kinds: nothing. */
void worn_cover(const worn_person *wp, enum placement_kind k, const placement_rect *r,
                const float *px, int pw, int ph, unsigned char *cv, int W, int H);

/* Trousers of kind k (px as for worn_shade, changed in place) go under
 * the model's own top: their pixels over it, down to its hem, are taken
 * out by how much the canvas cv (W×H×3) there is that top, so its hem
 * overlaps the waistband. Other kinds: nothing. */
void worn_tuck(const worn_person *wp, enum placement_kind k, const placement_rect *r, float *px,
               int pw, int ph, const unsigned char *cv, int W, int H);

/* Where trousers of kind k (px as for worn_shade) leave the model's own
 * trousers showing between their legs, shows the backdrop bd (W×H×3, as
 * given to worn_backdrop; NULL: nothing) instead, on the canvas cv. Other
 * kinds: nothing. */
void worn_reveal(const worn_person *wp, enum placement_kind k, const placement_rect *r,
                 const float *px, int pw, int ph, unsigned char *cv, const unsigned char *bd, int W,
                 int H);

/* Replaces the background behind the person in cv (W×H×3) with the
 * backdrop bd (W×H×3): exactly bd where the matte is clear, the person's
 * edges unmixed from the old background. */
void worn_backdrop(const worn_person *wp, unsigned char *cv, const unsigned char *bd, int W, int H);

#endif
