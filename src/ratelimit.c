/*
 * ratelimit — the token buckets of SPEC §4: the rule syntax, the bucket
 * arithmetic, and take/give/peek through the store. See ratelimit.h.
 */
#include "ratelimit.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Float slack: 0.999999999 units count as one. */
#define EPS 1e-9
#define RULE_MAX 1000000000LL

static ratelimit_rule rules[2]; /* [0] free, [1] pro; zero: off */

static int parse_count(const char *p, char **end, int64_t *out)
{
    if (*p < '0' || *p > '9') return -1;
    errno = 0;
    long long v = strtoll(p, end, 10);
    if (errno || v < 1 || v > RULE_MAX) return -1;
    *out = v;
    return 0;
}

int ratelimit_parse(const char *flag, const char *text, int64_t default_burst, ratelimit_rule *out,
                    char **err)
{
    memset(out, 0, sizeof *out);
    if (text && str_eq(text, "0")) return 0;
    ratelimit_rule r = {.burst = default_burst};
    char *p = NULL;
    if (!text || parse_count(text, &p, &r.units) != 0 || *p != '/') goto bad;
    switch (p[1]) {
    case 's':
        r.period_ms = 1000;
        break;
    case 'm':
        r.period_ms = 60 * 1000;
        break;
    case 'h':
        r.period_ms = 3600 * 1000;
        break;
    default:
        goto bad;
    }
    p += 2;
    if (*p == ',' && parse_count(p + 1, &p, &r.burst) != 0) goto bad;
    if (*p != '\0' || r.burst < 1) goto bad;
    *out = r;
    return 0;
bad:
    *err = xasprintf("--%s: expected N/s, N/m or N/h with an optional ,burst (e.g. 30/h,10), or 0"
                     " for no limit; got \"%s\"",
                     flag, text ? text : "");
    return -1;
}

int ratelimit_configure(const char *free_text, const char *pro_text, char **err)
{
    ratelimit_rule f, p;
    memset(rules, 0, sizeof rules);
    if (ratelimit_parse("rate-free", free_text, 10, &f, err) != 0) return -1;
    if (ratelimit_parse("rate-pro", pro_text, 30, &p, err) != 0) return -1;
    rules[0] = f;
    rules[1] = p;
    return 0;
}

const ratelimit_rule *ratelimit_rule_for(const char *plan)
{
    return &rules[plan && str_eq(plan, "pro") ? 1 : 0];
}

/* Whole seconds (at least 1) to gain `need` units at rate units per ms. */
static int64_t seconds_for(double need, double rate)
{
    double s = ceil(need / rate / 1000.0 - EPS);
    return s < 1 ? 1 : (int64_t)s;
}

bool ratelimit_step(const ratelimit_rule *r, store_bucket *b, int64_t units, int64_t now,
                    ratelimit_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->allowed = true;
    if (r->units <= 0) return false;
    double rate = (double)r->units / (double)r->period_ms, burst = (double)r->burst;
    double tokens = burst;
    int64_t at = now;
    if (b->updated_at > 0) { /* a bucket never written is full */
        int64_t elapsed = now - b->updated_at;
        if (elapsed < 0) { /* another process's clock is ahead: no refill, keep its time */
            elapsed = 0;
            at = b->updated_at;
        }
        tokens = b->tokens + (double)elapsed * rate;
        if (tokens > burst) tokens = burst;
    }
    bool write = false;
    if (units > 0 && tokens + EPS >= (double)units) {
        tokens -= (double)units;
        write = true;
    } else if (units > 0) {
        v->allowed = false;
        v->retry_after = seconds_for((double)units - tokens, rate);
    } else if (units < 0) {
        tokens -= (double)units;
        if (tokens > burst) tokens = burst;
        write = true;
    }
    if (tokens < 0) tokens = 0;
    v->applies = true;
    v->limit = r->burst;
    double whole = floor(tokens + EPS);
    v->remaining = (int64_t)whole;
    v->reset_s = tokens + EPS >= burst ? 0 : seconds_for(whole + 1 - tokens, rate);
    if (write) {
        b->tokens = tokens;
        b->updated_at = at;
    }
    return write;
}

typedef struct step_ctx {
    const ratelimit_rule *rule;
    int64_t units;
    int64_t now;
    ratelimit_verdict v;
} step_ctx;

static bool step_fn(store_bucket *b, void *ctx)
{
    step_ctx *c = ctx;
    return ratelimit_step(c->rule, b, c->units, c->now, &c->v);
}

static int apply(store_t *s, const user_record *u, int64_t units, ratelimit_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->allowed = true;
    step_ctx c = {.rule = ratelimit_rule_for(u->plan), .units = units};
    if (c.rule->units <= 0) return RATELIMIT_OK; /* no limit for this plan */
    c.now = now_ms();
    int rc = store_bucket_update(s, u->id, step_fn, &c);
    if (rc != STORE_OK) return rc;
    *v = c.v;
    return v->allowed ? RATELIMIT_OK : RATELIMIT_EEXCEEDED;
}

int ratelimit_take(store_t *s, const user_record *u, int64_t units, ratelimit_verdict *v)
{
    return apply(s, u, units > 0 ? units : 0, v);
}

int ratelimit_give(store_t *s, const user_record *u, int64_t units, ratelimit_verdict *v)
{
    return apply(s, u, units > 0 ? -units : 0, v);
}

int ratelimit_peek(store_t *s, const user_record *u, ratelimit_verdict *v)
{
    return apply(s, u, 0, v);
}
