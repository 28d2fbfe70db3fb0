/*
 * Unit tests: ids — id format and prefix, Crockford alphabet, time order,
 * ids_valid, secrets and their hashes, ids_random_below.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ids.h"
#include "util.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void setup(void)
{
    cr_assert_eq(ids_init(), 0);
}

TestSuite(ids, .init = setup);

static void assert_id_shape(const char *id, const char *prefix)
{
    size_t pl = strlen(prefix);
    cr_assert_eq(strncmp(id, prefix, pl), 0, "%s lacks prefix %s", id, prefix);
    cr_assert_eq(id[pl], '_', "%s", id);
    cr_assert_eq(strlen(id), pl + 1 + 26, "%s has length %zu", id, strlen(id));
    for (const char *c = id + pl + 1; *c; c++)
        cr_assert(strchr(crockford, *c), "'%c' of %s is not Crockford base32", *c, id);
}

Test(ids, format_for_every_prefix)
{
    const char *prefixes[] = {"gen", "usr", "key", "tpl", "bat", "upl", "evt", "x"};
    for (size_t i = 0; i < ARRAY_LEN(prefixes); i++) {
        char id[ID_LEN];
        ids_new(prefixes[i], id);
        assert_id_shape(id, prefixes[i]);
        cr_assert(ids_valid(id, prefixes[i]));
    }
}

Test(ids, time_part_encodes_milliseconds)
{
    char id[ID_LEN];
    ids_new_at("gen", 0, id);
    cr_assert_eq(strncmp(id, "gen_0000000000", 14), 0, "%s", id);
    ids_new_at("gen", 1, id);
    cr_assert_eq(strncmp(id, "gen_0000000001", 14), 0, "%s", id);
    ids_new_at("gen", 32, id);
    cr_assert_eq(strncmp(id, "gen_0000000010", 14), 0, "%s", id);
    /* The largest 48-bit time: first char is 7 (top two of 50 bits zero). */
    ids_new_at("gen", 0xFFFFFFFFFFFFLL, id);
    cr_assert_eq(strncmp(id, "gen_7ZZZZZZZZZ", 14), 0, "%s", id);
}

Test(ids, now_is_in_the_time_part)
{
    char lo[ID_LEN], id[ID_LEN], hi[ID_LEN];
    int64_t t0 = now_ms();
    ids_new("gen", id);
    int64_t t1 = now_ms();
    ids_new_at("gen", t0, lo);
    ids_new_at("gen", t1, hi);
    /* "gen_" + 10 time chars: between the clock before and after. */
    cr_assert_leq(strncmp(lo, id, 14), 0, "%s vs %s", lo, id);
    cr_assert_leq(strncmp(id, hi, 14), 0, "%s vs %s", id, hi);
}

Test(ids, sortable_across_milliseconds)
{
    int64_t base = 1700000000000LL;
    char prev[ID_LEN];
    ids_new_at("gen", base, prev);
    for (int64_t d = 1; d < 5000; d += 7) {
        char next[ID_LEN];
        ids_new_at("gen", base + d, next);
        cr_assert_lt(strcmp(prev, next), 0, "%s !< %s", prev, next);
        memcpy(prev, next, sizeof prev);
    }
    /* Across a carry in the base32 digits, and across years. */
    char a[ID_LEN], b[ID_LEN];
    ids_new_at("gen", 31, a);
    ids_new_at("gen", 32, b);
    cr_assert_lt(strcmp(a, b), 0);
    ids_new_at("gen", 1600000000000LL, a);
    ids_new_at("gen", 1900000000000LL, b);
    cr_assert_lt(strcmp(a, b), 0);
}

Test(ids, same_millisecond_ids_differ)
{
    char a[ID_LEN], b[ID_LEN];
    ids_new_at("gen", 1700000000000LL, a);
    ids_new_at("gen", 1700000000000LL, b);
    cr_assert_eq(strncmp(a, b, 14), 0);
    cr_assert_str_neq(a, b);
}

Test(ids, many_ids_are_unique)
{
    enum { N = 2000 };
    static char ids[N][ID_LEN];
    for (int i = 0; i < N; i++)
        ids_new("usr", ids[i]);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            cr_assert_str_neq(ids[i], ids[j]);
}

Test(ids, valid_rejects_wrong_shapes)
{
    char id[ID_LEN];
    ids_new("gen", id);
    cr_assert(ids_valid(id, "gen"));
    cr_assert_not(ids_valid(id, "usr"));
    cr_assert_not(ids_valid(id, "ge"));
    cr_assert_not(ids_valid(NULL, "gen"));
    cr_assert_not(ids_valid("", "gen"));
    cr_assert_not(ids_valid("gen_", "gen"));
    cr_assert_not(ids_valid("gen", "gen"));

    char bad[ID_LEN + 2];
    /* too short, too long */
    snprintf(bad, sizeof bad, "%.*s", (int)strlen(id) - 1, id);
    cr_assert_not(ids_valid(bad, "gen"));
    snprintf(bad, sizeof bad, "%s0", id);
    cr_assert_not(ids_valid(bad, "gen"));
    /* wrong separator */
    snprintf(bad, sizeof bad, "%s", id);
    bad[3] = '-';
    cr_assert_not(ids_valid(bad, "gen"));
    /* letters outside Crockford's alphabet, and lowercase */
    const char outside[] = {'I', 'L', 'O', 'U', 'a', 'z', '-', '_', ' '};
    for (size_t i = 0; i < sizeof outside; i++) {
        snprintf(bad, sizeof bad, "%s", id);
        bad[20] = outside[i];
        cr_assert_not(ids_valid(bad, "gen"), "accepted %s", bad);
    }
    /* a hand-written valid one */
    cr_assert(ids_valid("gen_01JD3V6Z8Q4W3T9X0M2N5P7R1S", "gen"));
}

Test(ids, secrets)
{
    char a[80], b[80];
    ids_new_secret("sk", a, sizeof a);
    ids_new_secret("sk", b, sizeof b);
    cr_assert_eq(strncmp(a, "sk_", 3), 0, "%s", a);
    cr_assert_eq(strlen(a), 3 + 43, "%s", a);
    for (const char *c = a + 3; *c; c++)
        cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c),
                  "'%c' is not url-safe base64", *c);
    cr_assert_str_neq(a, b);
}

static bool is_lower_hex(const char *s)
{
    for (; *s; s++)
        if (!strchr("0123456789abcdef", *s)) return false;
    return true;
}

Test(ids, secret_hash_is_stable_hex)
{
    char secret[80];
    ids_new_secret("sk", secret, sizeof secret);
    char h1[SECRET_HASH_LEN], h2[SECRET_HASH_LEN];
    ids_hash_secret(secret, h1);
    ids_hash_secret(secret, h2);
    cr_assert_eq(strlen(h1), 64);
    cr_assert(is_lower_hex(h1), "%s", h1);
    cr_assert_str_eq(h1, h2);

    char other[80], h3[SECRET_HASH_LEN];
    ids_new_secret("sk", other, sizeof other);
    ids_hash_secret(other, h3);
    cr_assert_str_neq(h1, h3);
    cr_assert_null(strstr(h1, secret + 3));
}

Test(ids, secret_hash_is_blake2b_256)
{
    char h[SECRET_HASH_LEN];
    ids_hash_secret("abc", h);
    cr_assert_str_eq(h, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

Test(ids, random_below)
{
    int seen[10] = {0};
    for (int i = 0; i < 2000; i++) {
        uint32_t v = ids_random_below(10);
        cr_assert_lt(v, 10u);
        seen[v]++;
    }
    for (int i = 0; i < 10; i++)
        cr_assert_gt(seen[i], 0, "value %d never drawn", i);
    cr_assert_eq(ids_random_below(1), 0u);
    for (int i = 0; i < 100; i++)
        cr_assert_leq(ids_random_below(2147483648u), 2147483647u);
}
