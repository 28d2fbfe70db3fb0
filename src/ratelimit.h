/*
 * ratelimit — per-user rate limits on the routes that create generations
 * (SPEC §4): a token bucket per user, its rule chosen by the user's plan
 * (--rate-free, --rate-pro, written N/s|m|h[,burst]; 0 turns one off).
 * One unit per generation created.
 *
 * The bucket lives in the store (rate_limits, store_bucket_update), so a
 * limit holds across restarts and across every process on one database;
 * the arithmetic is here (ratelimit_step, pure, on the now_ms() clock).
 * Refill is continuous: rate units per period, never above the burst; a
 * bucket never seen is full.
 *
 * How the routes use it: take the units just before the charged write
 * (after validation, so a refused request costs nothing), and give them
 * back when nothing was created (an error, an idempotent replay). Giving
 * back is exact — refill is linear and capped, so take-then-give leaves
 * the bucket as if nothing had happened — and both are single store
 * transactions, so concurrent requests neither lose nor invent a unit.
 * Only a crash between the take and the give can lose one unit. A keyed
 * request refused here may still be a replay: gen_service asks the store
 * (store_idem_peek) before it answers 429.
 *
 * Functions return 0 (RATELIMIT_OK), RATELIMIT_EEXCEEDED, or a STORE_E*
 * code when the store failed (then nothing was taken).
 */
#ifndef SS_RATELIMIT_H
#define SS_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum {
    RATELIMIT_OK = 0,
    RATELIMIT_EEXCEEDED = -100, /* not enough units: nothing taken */
};

/* A rule: `units` per `period_ms`, at most `burst` saved up. units 0: off. */
typedef struct ratelimit_rule {
    int64_t units;
    int64_t period_ms;
    int64_t burst;
} ratelimit_rule;

/* What a take (or a look) found, for the RateLimit-* headers. */
typedef struct ratelimit_verdict {
    bool applies;        /* a limit is on for this user (else no headers) */
    bool allowed;        /* the units were taken (always true for give and peek) */
    int64_t limit;       /* RateLimit-Limit: the burst */
    int64_t remaining;   /* RateLimit-Remaining: whole units left now */
    int64_t reset_s;     /* RateLimit-Reset: seconds until the next unit (0: full) */
    int64_t retry_after; /* refused: Retry-After, seconds until enough units (>= 1) */
} ratelimit_verdict;

/* Parses "0" or "N/s|m|h[,burst]"; without a burst, default_burst. 0, or
 * -1 with *err (caller frees) naming the flag. */
int ratelimit_parse(const char *flag, const char *text, int64_t default_burst, ratelimit_rule *out,
                    char **err);
/* Sets the rules of the free and pro plans (--rate-free, --rate-pro) from
 * their texts; until then, and for a bad text, every limit is off. 0, or
 * -1 with *err (caller frees). */
int ratelimit_configure(const char *free_text, const char *pro_text, char **err);
/* The rule for a plan ("pro", anything else is free). */
const ratelimit_rule *ratelimit_rule_for(const char *plan);

/* The bucket arithmetic: refills *b to now, then takes `units` (> 0) if
 * there are that many, gives them back (< 0, capped at the burst) or only
 * looks (0). Fills *v; true when *b changed and must be written. */
bool ratelimit_step(const ratelimit_rule *r, store_bucket *b, int64_t units, int64_t now,
                    ratelimit_verdict *v);

/* Takes `units` from the user's bucket: RATELIMIT_OK (also when no limit
 * applies), RATELIMIT_EEXCEEDED with v->retry_after, or a store error. */
int ratelimit_take(store_t *s, const user_record *u, int64_t units, ratelimit_verdict *v);
/* Gives back units taken for something that was not created. */
int ratelimit_give(store_t *s, const user_record *u, int64_t units, ratelimit_verdict *v);
/* The bucket as it is now, nothing taken (headers of a refused request). */
int ratelimit_peek(store_t *s, const user_record *u, ratelimit_verdict *v);

#endif
