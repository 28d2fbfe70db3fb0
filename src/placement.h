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
    int hero;                     /* the product drawn a little larger */
    double fill;                  /* 0..1: how much of its box the group fills */
    double shift;                 /* -1..1: sideways shift of the box */
    double floor_y;               /* realistic: the floor line, normalised (may be raised) */
} placement_req;

/* Arranges req's products into out[0..n). For a studio floor a low group
 * stands on a floor raised towards the middle: *floor_y (in: the planned
 * line) is moved with it. */
void placement_arrange(const placement_req *req, placement_rect *out, double *floor_y);

#endif
