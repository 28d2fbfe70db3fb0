/*
 * placement.h — where the local-studio compositor puts its products in the
 * frame (placement.c): rows of cut-outs fitted in a box, bottom-aligned,
 * the box chosen by the style and the seed. Pure geometry: no pixels.
 */
#ifndef SS_PLACEMENT_H
#define SS_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>

#define PLACEMENT_MAX 5 /* products in one picture */

/* One placed product, in output pixels. */
typedef struct placement_rect {
    int x, y, w, h;
} placement_rect;

/* What the arrangement depends on. */
typedef struct placement_req {
    int W, H;      /* the frame */
    int style;     /* 0 realistic (standing on a studio floor), 1 artistic, 2 minimal */
    bool on_model; /* over a model photo (the fallback when no body is found) */
    size_t n;      /* 1..PLACEMENT_MAX */
    double aspect[PLACEMENT_MAX]; /* each product's width / height */
    bool small[PLACEMENT_MAX];    /* an accessory (a bag): drawn smaller than a garment */
    int hero;                     /* the product drawn a little larger */
    double fill;                  /* 0..1: how much of its box the group fills */
    double shift;                 /* -1..1: sideways shift of the box */
    double floor_y;               /* realistic: the floor line, normalised (may be raised) */
} placement_req;

/* ---- worn on the model ---- */

/* A person in a photo, from its matte: rows are output pixels. */
typedef struct placement_body {
    int top, bottom;            /* head top, feet */
    double cx;                  /* the body's centre line */
    int head_w;                 /* head width */
    int shoulder_y, shoulder_w; /* the shoulder line and width (arms included) */
    int waist_y, hip_y, hip_w;
    int top_hem_y;      /* where the model's own top ends (hip_y when unknown) */
    int top_hem_w;      /* its width just above the hem, arms left out */
    int feet_w;         /* both feet */
    int hand_x, hand_y; /* the right hand (viewer's right) */
} placement_body;

/* What a product is, from its silhouette. */
enum placement_kind {
    PLACEMENT_TOP,      /* shirt, T-shirt: sleeves wider than the hem */
    PLACEMENT_DRESS,    /* long, from the shoulders down */
    PLACEMENT_TROUSERS, /* long, two legs at the bottom */
    PLACEMENT_SHOES,    /* low and wide, at the feet */
    PLACEMENT_HAT,      /* a dome: on the head */
    PLACEMENT_ACCESSORY /* anything else: held at the hand */
};

/* Finds the person in alpha (w×h, 0..1; the person's matte) scaled by
 * `scale` to output pixels; rgb (w×h×3, may be NULL) is the photo, for the
 * hem of the model's own top. false when no person-like figure is there. */
bool placement_find_body(const float *alpha, const unsigned char *rgb, int w, int h, double scale,
                         placement_body *b);

/* The kind of a product from its alpha (w×h, trimmed to its box). */
enum placement_kind placement_kind_of(const float *alpha, int w, int h);

/* Where a product of kind k is worn on body b; alpha (w×h, trimmed to its
 * box) is its silhouette, for its aspect and its widths (a trouser's
 * waist, a dress's skirt at the model's hem). */
placement_rect placement_on_body(const placement_body *b, enum placement_kind k, const float *alpha,
                                 int w, int h);

/* Arranges req's products into out[0..n). For a studio floor a low group
 * stands on a floor raised towards the middle: *floor_y (in: the planned
 * line) is moved with it. */
void placement_arrange(const placement_req *req, placement_rect *out, double *floor_y);

#endif
