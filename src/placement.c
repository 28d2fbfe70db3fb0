/*
 * placement — the arrangement of the local-studio compositor's products in
 * the frame. The products go in one to three rows, bottom-aligned, fitted
 * in a box whose size and position follow the style and the seed's draws
 * (fill, shift, hero); equal areas rather than equal heights, so a wide cap
 * is not drawn taller than a shirt; an accessory (a bag) smaller than a
 * garment. On a studio floor up to three products share one row and the
 * group stands on the floor line.
 *
 * Worn on the model: the person is found from the matte of the model photo
 * (head top, shoulder line where the silhouette first grows to twice the
 * head's width, waist and hips' height by proportion, the hem of the
 * model's own top by its colour, the hips' and the hem's widths as the run
 * of one cloth through the centre line — the arms and hands beside them
 * left out —, the feet, the right hand at the lowest row of the arm beyond
 * the torso); a product's kind comes from its silhouette (sleeves wider
 * than the hem: a top; two legs: trousers; long: a dress; low and wide:
 * shoes — a pair side by side always — or a hat when it is a dome; else an
 * accessory), and each kind has its place: a top from the shoulders, a
 * dress from the shoulders down with its skirt spanning the top's hem,
 * trousers from under the top's hem, shoes at the feet, a hat on the head,
 * an accessory with its handle in the hand.
 */
#include <math.h>
#include <stdlib.h>

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

#define SMALL_SCALE 0.78 /* an accessory's size against a garment's */

/* An accessory (a bag) fitted to the box like a garment fills a frame a
 * garment of its size would not: it is drawn at SMALL_SCALE, about its
 * bottom centre (the rows stay bottom-aligned). */
static void shrink_small(const placement_req *q, placement_rect *pl)
{
    for (size_t i = 0; i < q->n; i++) {
        if (!q->small[i]) continue;
        int w = (int)lround(pl[i].w * SMALL_SCALE), h = (int)lround(pl[i].h * SMALL_SCALE);
        pl[i].x += (pl[i].w - w) / 2;
        pl[i].y += pl[i].h - h;
        pl[i].w = w > 1 ? w : 1;
        pl[i].h = h > 1 ? h : 1;
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
    shrink_small(q, pl);
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

/* ---- worn on the model ---- */

/* Columns covered (alpha ≥ .5) in row y: the first, the last and the count. */
static int row_extent(const float *a, int w, int y, int *x0, int *x1)
{
    int n = 0;
    *x0 = w;
    *x1 = -1;
    const float *r = a + (size_t)y * w;
    for (int x = 0; x < w; x++)
        if (r[x] >= 0.5f) {
            if (x < *x0) *x0 = x;
            *x1 = x;
            n++;
        }
    return n;
}

/* The silhouette row by row: per row the first and last covered columns
 * and the count, the figure's top and bottom rows and its height. */
typedef struct silhouette {
    const float *a;
    int w, h;
    int *x0, *x1, *cnt;
    int top, bottom, hp;
} silhouette;

/* Fills s's rows from a (w×h). false when there is no figure at least a
 * third of the photo tall (s's buffers are allocated either way). */
static bool silhouette_scan(const float *a, int w, int h, silhouette *s)
{
    *s = (silhouette){.a = a, .w = w, .h = h, .top = -1, .bottom = -1};
    s->x0 = malloc((size_t)h * sizeof *s->x0);
    s->x1 = malloc((size_t)h * sizeof *s->x1);
    s->cnt = malloc((size_t)h * sizeof *s->cnt);
    if (!s->x0 || !s->x1 || !s->cnt) return false;
    for (int y = 0; y < h; y++) {
        s->cnt[y] = row_extent(a, w, y, &s->x0[y], &s->x1[y]);
        if (s->cnt[y] > w / 200 + 1) {
            if (s->top < 0) s->top = y;
            s->bottom = y;
        }
    }
    s->hp = s->bottom - s->top;
    return s->top >= 0 && s->hp >= h / 3;
}

static void silhouette_free(silhouette *s)
{
    free(s->x0);
    free(s->x1);
    free(s->cnt);
}

/* The head's width: the mean count of its rows. */
static int head_width(const silhouette *s)
{
    int hw = 0, k = 0;
    for (int y = s->top + s->hp / 50; y < s->top + s->hp / 14 && y < s->h; y++, k++)
        hw += s->cnt[y];
    return k ? hw / k : 1;
}

/* The shoulder line: the first row below the head more than 2.2 times as
 * wide as it (18% of the height when none is), and its width. */
static void shoulders(const silhouette *s, int hw, int *sy_out, int *sw_out)
{
    int sy = -1, sw = 0;
    for (int y = s->top + s->hp / 16; y < s->top + s->hp / 3; y++)
        if (s->cnt[y] > 2.2 * hw) {
            sy = y;
            break;
        }
    if (sy < 0) sy = s->top + (int)(0.18 * s->hp);
    for (int y = sy; y < sy + s->hp / 25 + 1 && y < s->h; y++)
        if (s->x1[y] - s->x0[y] + 1 > sw) sw = s->x1[y] - s->x0[y] + 1;
    *sy_out = sy;
    *sw_out = sw;
}

/* The body's centre line: the mean middle of the rows from the shoulders
 * to the hips. */
static double centre_line(const silhouette *s, int sy, int hy)
{
    double cx = 0;
    int nc = 0;
    for (int y = sy; y < hy; y++)
        if (s->cnt[y]) {
            cx += (s->x0[y] + s->x1[y]) / 2.0;
            nc++;
        }
    return nc ? cx / nc : s->w / 2.0;
}

/* Whether RGB pixel p is the same cloth as ref under another light: its
 * chromaticity close (summed |Δ| under 0.06), its brightness within
 * 0.5..1.8 of ref's (a shaded side of a garment is darker, not another
 * hue; skin beside it is another hue). */
static bool same_cloth(const unsigned char *p, const unsigned char *ref)
{
    double ps = p[0] + p[1] + p[2] + 3, rs = ref[0] + ref[1] + ref[2] + 3, d = 0;
    for (int c = 0; c < 3; c++)
        d += fabs((p[c] + 1) / ps - (ref[c] + 1) / rs);
    return d < 0.06 && ps / rs > 0.5 && ps / rs < 1.8;
}

/* The hips: the torso's width without the arms or hands beside it — the
 * covered run through the centre line in row hy (across a gap between the
 * legs up to gap px), and with rgb only as far as the cloth nearest the
 * centre goes (hands touching the hips are skin, not cloth; two pixels of
 * another cloth end the run). */
static int hip_width(const silhouette *s, const unsigned char *rgb, int hy, double cx, int gap)
{
    int w = s->w, c = (int)lround(cx);
    if (c < 0 || c >= w || hy < 0 || hy >= s->h) return 1;
    const float *hr = s->a + (size_t)hy * w;
    const unsigned char *row = rgb ? rgb + (size_t)hy * w * 3 : NULL, *ref = NULL;
    for (int d = 0; row && d <= gap && !ref; d++)
        if (c + d < w && hr[c + d] >= 0.5f)
            ref = row + (c + d) * 3;
        else if (c - d >= 0 && hr[c - d] >= 0.5f)
            ref = row + (c - d) * 3;
    int ends[2];
    for (int dir = -1, k = 0; dir <= 1; dir += 2, k++) {
        int x = c, last = c, miss = 0, clear = 0;
        while (x + dir >= 0 && x + dir < w) {
            x += dir;
            if (hr[x] < 0.5f) {
                if (++clear > gap) break;
                continue;
            }
            clear = 0;
            if (ref && !same_cloth(row + x * 3, ref)) {
                if (++miss >= 2) break;
                continue;
            }
            miss = 0;
            last = x;
        }
        ends[k] = last;
    }
    return ends[1] - ends[0] + 1;
}

/* Both feet: the widest of the bottom rows. */
static int feet_width(const silhouette *s)
{
    int fw = 0;
    for (int y = s->bottom - s->hp / 40; y <= s->bottom; y++)
        if (y >= 0 && s->x1[y] - s->x0[y] + 1 > fw) fw = s->x1[y] - s->x0[y] + 1;
    return fw;
}

/* The right hand (viewer's right): the arm is the part of the silhouette
 * beyond the torso's edge (body_x1, from the centre line, the hips or the
 * top's hem); from its outermost point between the waist and 62% of the
 * height down to its lowest row beyond the edge (the fingertips), the
 * hand is a quarter of a head above that, in the middle of the arm's run
 * there. The outermost point when no arm stands clear of the torso. */
static void right_hand(const silhouette *s, int wy, double cx, int hy, int body_x1, int hw,
                       int *hand_x, int *hand_y)
{
    *hand_x = (int)cx;
    *hand_y = hy;
    for (int y = wy; y < s->top + (int)(0.62 * s->hp) && y < s->h; y++)
        if (s->x1[y] > *hand_x) {
            *hand_x = s->x1[y];
            *hand_y = y;
        }
    int edge = body_x1 + hw / 5, tip = -1;
    if (*hand_x <= edge) return;
    for (int y = *hand_y; y < s->top + (int)(0.75 * s->hp) && y < s->h && s->x1[y] > edge; y++)
        tip = y;
    int gy = tip - hw / 4 > *hand_y ? tip - hw / 4 : *hand_y;
    const float *row = s->a + (size_t)gy * s->w;
    int l = s->x1[gy];
    while (l - 1 > body_x1 && row[l - 1] >= 0.5f)
        l--;
    *hand_x = (l + s->x1[gy]) / 2;
    *hand_y = gy;
}

/* The hem of the model's own top: down the centre line from the chest
 * while the colour stays the chest's (so a garment can cover it); hy when
 * rgb is NULL or says nothing. */
static int top_hem(const silhouette *s, const unsigned char *rgb, double cx, int sy, int hy)
{
    int hem = hy, w = s->w;
    if (!rgb) return hem;
    int ccx = (int)lround(cx), chest = sy + s->hp / 10;
    if (ccx < 0 || ccx >= w || chest >= s->h) return hem;
    const unsigned char *c0 = rgb + ((size_t)chest * w + ccx) * 3;
    int miss = 0;
    for (int y = chest; y < s->top + (int)(0.75 * s->hp) && y < s->h; y++) {
        const unsigned char *c = rgb + ((size_t)y * w + ccx) * 3;
        int d = abs(c[0] - c0[0]) + abs(c[1] - c0[1]) + abs(c[2] - c0[2]);
        if (d > 60) {
            if (++miss >= 3) break;
        } else {
            miss = 0;
            hem = y;
        }
    }
    return hem;
}

/* Contract in placement.h. Proportions where the silhouette says nothing
 * clear: shoulders at 18% of the height below the head top, the waist at
 * 42%, the hips at 52% (an adult standing, the head about 1/7.5). */
bool placement_find_body(const float *a, const unsigned char *rgb, int w, int h, double scale,
                         placement_body *b)
{
    silhouette s;
    bool ok = false;
    if (!silhouette_scan(a, w, h, &s)) goto done;
    int hw = head_width(&s);
    if (hw < 2) goto done;
    int sy, sw;
    shoulders(&s, hw, &sy, &sw);
    int wy = s.top + (int)(0.42 * s.hp), hy = s.top + (int)(0.52 * s.hp);
    double cx = centre_line(&s, sy, hy);

    b->top = (int)lround(s.top * scale);
    b->bottom = (int)lround(s.bottom * scale);
    b->cx = cx * scale;
    b->head_w = (int)lround(hw * scale);
    b->shoulder_y = (int)lround(sy * scale);
    b->shoulder_w = (int)lround(sw * scale);
    b->waist_y = (int)lround(wy * scale);
    b->hip_y = (int)lround(hy * scale);
    /* The hips below the model's own top's hem where it is long (a loose
     * top is wider than the hips), above the crotch. */
    int hem = top_hem(&s, rgb, cx, sy, hy), hrow = hem + s.hp / 50;
    if (hrow < hy) hrow = hy;
    if (hrow > s.top + (int)(0.64 * s.hp)) hrow = s.top + (int)(0.64 * s.hp);
    b->top_hem_y = (int)lround(hem * scale);
    b->feet_w = (int)lround(feet_width(&s) * scale);
    int hem_w = hip_width(&s, rgb, hem - s.hp / 50, cx, hw / 3 + 1);
    int hip_w = hip_width(&s, rgb, hrow, cx, hw / 3 + 1), hand_x, hand_y;
    right_hand(&s, wy, cx, hy, (int)lround(cx + (hem_w > hip_w ? hem_w : hip_w) / 2.0), hw, &hand_x,
               &hand_y);
    b->top_hem_w = (int)lround(hem_w * scale);
    b->hip_w = (int)lround(hip_w * scale);
    b->hand_x = (int)lround(hand_x * scale);
    b->hand_y = (int)lround(hand_y * scale);
    ok = sw > hw;
done:
    silhouette_free(&s);
    return ok;
}

/* Contract in placement.h. */
enum placement_kind placement_kind_of(const float *a, int w, int h)
{
    double aspect = (double)w / h;
    int l, r;
    int top_w = 0, mid_w = 0, low_w = 0;
    for (int y = h * 15 / 100; y < h * 25 / 100; y++) {
        int n = row_extent(a, w, y, &l, &r);
        if (n && r - l + 1 > top_w) top_w = r - l + 1;
    }
    for (int y = h * 45 / 100; y < h * 55 / 100; y++) {
        int n = row_extent(a, w, y, &l, &r);
        if (n && r - l + 1 > mid_w) mid_w = r - l + 1;
    }
    /* Two legs: a gap through the middle of the bottom rows. */
    int gap_rows = 0, rows = 0;
    for (int y = h * 75 / 100; y < h * 95 / 100; y++, rows++) {
        int n = row_extent(a, w, y, &l, &r);
        if (n) low_w = r - l + 1 > low_w ? r - l + 1 : low_w;
        if (n && r - l + 1 > n + w / 20) gap_rows++;
    }
    if (aspect >= 1.5 && h > 0) {
        /* Low and wide: a pair side by side (two parts through the middle
         * rows) is shoes, whatever their tops; else a dome narrower at
         * the top is a hat, and the rest shoes. */
        int split = 0, mid_rows = 0;
        for (int y = h * 30 / 100; y < h * 70 / 100; y++, mid_rows++) {
            int n = row_extent(a, w, y, &l, &r);
            if (n && r - l + 1 > n + w / 20) split++;
        }
        if (mid_rows && split > mid_rows / 2) return PLACEMENT_SHOES;
        return top_w < 0.75 * low_w ? PLACEMENT_HAT : PLACEMENT_SHOES;
    }
    if (rows && gap_rows > rows / 2 && aspect < 0.9) return PLACEMENT_TROUSERS;
    if (top_w > 1.25 * mid_w && aspect > 0.6) return PLACEMENT_TOP;
    if (aspect < 0.75) return PLACEMENT_DRESS;
    if (aspect >= 0.75 && top_w >= 0.9 * mid_w) return PLACEMENT_TOP;
    return PLACEMENT_ACCESSORY;
}

/* The share of the width of a's box (w×h) the silhouette spans in the
 * rows around height t (0 top .. 1 bottom), outermost columns; 1 when
 * there is nothing there. */
static double width_share(const float *a, int w, int h, double t)
{
    int y0 = (int)(t * h) - h / 100 - 1, y1 = (int)(t * h) + h / 100 + 1, best = 0, l, r;
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < h; y++)
        if (row_extent(a, w, y, &l, &r) && r - l + 1 > best) best = r - l + 1;
    return best ? (double)best / w : 1;
}

/* Contract in placement.h. */
placement_rect placement_on_body(const placement_body *b, enum placement_kind k, const float *pa,
                                 int pw, int ph)
{
    int hp = b->bottom - b->top;
    double aspect = (double)pw / ph;
    double w, h, x, y;
    switch (k) {
    case PLACEMENT_TOP:
        /* The collar a little above the shoulder line (a flat-laid top's
         * shoulders slope), the sleeves past the shoulders, and long
         * enough to reach the hips: it covers the model's own top. */
        y = b->shoulder_y - 0.06 * hp;
        w = b->shoulder_w * 1.25;
        h = fmax(w / aspect, fmax(b->hip_y, b->top_hem_y) - y + 0.02 * hp);
        w = h * aspect;
        x = b->cx - w / 2;
        break;
    case PLACEMENT_DRESS:
        /* From the shoulders down, at least past the hips, and its skirt
         * at the model's hem wider than the model's own top there (a
         * strappy dress is narrow at the chest: its skirt would leave the
         * top showing at the hips). */
        y = b->shoulder_y - 0.04 * hp;
        w = b->shoulder_w * 1.10;
        h = fmax(w / aspect, fmax(b->hip_y, b->top_hem_y) - y + 0.12 * hp);
        w = h * aspect;
        if (b->top_hem_y > y) {
            /* Longer by up to 15% (the skirt flares lower down), then wider
             * by up to a third; what is still showing beside the skirt
             * worn_cover paints over. */
            double need = b->top_hem_w * 1.06, share;
            for (int i = 0; i < 3; i++) {
                share = width_share(pa, pw, ph, (b->top_hem_y - y) / h);
                if (share * w >= need) break;
                h *= 1.05;
                w = h * aspect;
            }
            share = width_share(pa, pw, ph, (b->top_hem_y - y) / h);
            w = fmax(w, fmin(need / share, w * 1.35));
        }
        x = b->cx - w / 2;
        break;
    case PLACEMENT_TROUSERS:
        /* The waistband just under the hem of the model's own top (which
         * is drawn over it: worn_tuck), not over the top; from the waist
         * when the top is short, at most a little below the hips; down to
         * just above the feet, and the waistband at least as wide as the hips (without
         * the arms) — stretched sideways by up to a third rather than made
         * longer than the legs. */
        y = clampd(b->top_hem_y - 0.03 * hp, b->waist_y, b->hip_y + 0.08 * hp);
        h = b->bottom - y - 0.03 * hp;
        w = fmax(h * aspect, fmin(b->hip_w * 1.06 / fmax(width_share(pa, pw, ph, 0.03), 0.5),
                                  h * aspect * 1.35));
        x = b->cx - w / 2;
        break;
    case PLACEMENT_SHOES:
        w = fmax(b->feet_w * 1.15, b->head_w * 1.6);
        h = w / aspect;
        x = b->cx - w / 2;
        y = b->bottom - h + 0.01 * hp;
        break;
    case PLACEMENT_HAT:
        w = b->head_w * 1.45;
        h = w / aspect;
        x = b->cx - w / 2;
        y = b->top - h * 0.45;
        break;
    default:
        /* Held: the top of the handle (the middle of the box's top) in
         * the hand. */
        h = 0.22 * hp;
        w = h * aspect;
        x = b->hand_x - w / 2;
        y = b->hand_y - 0.01 * hp;
        break;
    }
    placement_rect r = {(int)lround(x), (int)lround(y), (int)lround(fmax(w, 1)),
                        (int)lround(fmax(h, 1))};
    return r;
}
