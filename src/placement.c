/*
 * placement — the arrangement of the local-studio compositor's products in
 * the frame. The products go in one to three rows, bottom-aligned, fitted
 * in a box whose size and position follow the style and the seed's draws
 * (fill, shift, hero); equal areas rather than equal heights, so a wide cap
 * is not drawn taller than a shirt. On a studio floor up to three products
 * share one row and the group stands on the floor line.
 */
#include <math.h>

#include "placement.h"

static double lerp(double a, double b, double t)
{
    return a + (b - a) * t;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Arranges the items in rows inside the box (bx, by, bw, bh), bottom rows
 * on the box's bottom edge, horizontally centred on the box. */
static void rows(const placement_req *q, double bx, double by, double bw, double bh, double gap,
                 double row_bias, placement_rect *out)
{
    size_t n = q->n;
    double rel[PLACEMENT_MAX], relmax = 0;
    for (size_t i = 0; i < n; i++) {
        rel[i] = ((n > 1 && (int)i != q->hero) ? 0.82 : 1.0) / sqrt(q->aspect[i]);
        if (rel[i] > relmax) relmax = rel[i];
    }
    for (size_t i = 0; i < n; i++)
        rel[i] /= relmax;
    int best_rows = 1;
    double best_scale = 0;
    for (int r = 1; r <= (int)n && r <= 3; r++) {
        size_t per = (n + (size_t)r - 1) / (size_t)r;
        double maxw = 0, toth = 0;
        for (size_t start = 0; start < n; start += per) {
            double rw = 0, rh = 0;
            for (size_t i = start; i < n && i < start + per; i++) {
                rw += rel[i] * q->aspect[i] + (i > start ? gap : 0);
                if (rel[i] > rh) rh = rel[i];
            }
            if (rw > maxw) maxw = rw;
            toth += rh + (start ? gap : 0);
        }
        double scale = fmin(bw / maxw, bh / toth);
        if (scale > best_scale * row_bias) {
            best_scale = scale;
            best_rows = r;
        }
    }
    size_t per = (n + (size_t)best_rows - 1) / (size_t)best_rows;
    double base = by + bh;
    size_t nrows = (n + per - 1) / per;
    for (size_t r = nrows; r-- > 0;) {
        size_t start = r * per, end = start + per < n ? start + per : n;
        double rw = 0, rh = 0;
        for (size_t i = start; i < end; i++) {
            rw += rel[i] * q->aspect[i] + (i > start ? gap : 0);
            if (rel[i] > rh) rh = rel[i];
        }
        double x = bx + (bw - rw * best_scale) / 2;
        for (size_t i = start; i < end; i++) {
            double ih = rel[i] * best_scale, iw = ih * q->aspect[i];
            out[i].w = (int)lround(fmax(iw, 1));
            out[i].h = (int)lround(fmax(ih, 1));
            out[i].x = (int)lround(x);
            out[i].y = (int)lround(base - ih);
            x += iw + gap * best_scale;
        }
        base -= (rh + gap) * best_scale;
    }
}

static void extent(const placement_rect *pl, size_t n, int H, int *top, int *bottom)
{
    *top = H;
    *bottom = 0;
    for (size_t i = 0; i < n; i++) {
        if (pl[i].y < *top) *top = pl[i].y;
        if (pl[i].y + pl[i].h > *bottom) *bottom = pl[i].y + pl[i].h;
    }
}

/* Contract in placement.h. */
void placement_arrange(const placement_req *q, placement_rect *pl, double *floor_y)
{
    int W = q->W, H = q->H, kind = q->style;
    size_t n = q->n;
    double m = fmin(W, H), fill = q->fill, shift = q->shift;
    double bx, by, bw, bh;
    if (q->on_model) {
        double s = m * lerp(0.36, 0.46, fill) * (n > 1 ? 1.25 : 1.0);
        bw = fmin(s * (n > 1 ? 1.6 : 1.0), W * 0.9);
        bh = fmin(s, H * 0.45);
        double cx = W * (0.5 + 0.10 * shift), cyb = H * 0.90;
        bx = clampd(cx - bw / 2, W * 0.04, W * 0.96 - bw);
        by = cyb - bh;
    } else if (kind == 0) {
        double base = *floor_y * H;
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
        bh = H * lerp(0.60, 0.70, fill);
        bw = W * lerp(0.64, 0.74, fill);
        bx = (W - bw) / 2;
        by = (H - bh) / 2 - H * 0.01;
    }
    double row_bias = kind == 0 && !q->on_model ? (n <= 3 ? 1e9 : 1.6) : 1.15;
    rows(q, bx, by, bw, bh, 0.10, row_bias, pl);
    int top, bottom;
    extent(pl, n, H, &top, &bottom);
    if (kind == 0 && !q->on_model) {
        /* A low group stands on a floor raised towards the middle, so the
         * picture is not all empty wall. */
        double want = (H + (bottom - top)) / 2.0 + H * 0.07;
        if (want < bottom) {
            int dy = (int)lround(want) - bottom;
            for (size_t i = 0; i < n; i++)
                pl[i].y += dy;
            *floor_y = want / H;
        }
    } else if (!q->on_model) {
        /* Centre the group vertically in the box (it sits on its bottom). */
        int dy = (int)lround(by + (bh - (bottom - top)) / 2) - top;
        for (size_t i = 0; i < n; i++)
            pl[i].y += dy;
    }
}
