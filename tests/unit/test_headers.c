/*
 * test_headers — the request headers parsed by the service itself (the
 * pure functions that tests/fuzz/fuzz_headers.c fuzzes): Prefer: wait=N,
 * Last-Event-ID, Authorization: Bearer, Idempotency-Key. Includes the
 * cases the old parsers got wrong: a wait past INT_MAX wrapped around
 * (atoi), "nowait=5" counted as wait=5, and an out-of-range or signed
 * Last-Event-ID was accepted (strtoll saturates and takes "+5", " 5").
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "api.h"
#include "auth.h"
#include "gen_service.h"

Test(headers, prefer_wait)
{
    cr_assert_eq(api_prefer_wait(NULL), -1);
    cr_assert_eq(api_prefer_wait("respond-async"), -1);
    cr_assert_eq(api_prefer_wait("wait=10"), 10);
    cr_assert_eq(api_prefer_wait("respond-async, wait=5"), 5);
    cr_assert_eq(api_prefer_wait("handling=lenient; WAIT=7"), 7);
    cr_assert_eq(api_prefer_wait("wait=61"), 60);
    cr_assert_eq(api_prefer_wait("wait=-4"), 0);
    cr_assert_eq(api_prefer_wait("wait=abc"), 0);
    /* Was 1: atoi wrapped 2^32 + 1 around. */
    cr_assert_eq(api_prefer_wait("wait=4294967297"), 60);
    cr_assert_eq(api_prefer_wait("wait=99999999999999999999999"), 60);
    /* Was 5: any "wait=" inside another token matched. */
    cr_assert_eq(api_prefer_wait("nowait=5"), -1);
    cr_assert_eq(api_prefer_wait("nowait=5, wait=2"), 2);
}

Test(headers, last_event_id)
{
    int64_t id = -1;
    cr_assert_eq(api_last_event_id("0", &id), 0);
    cr_assert_eq(id, 0);
    cr_assert_eq(api_last_event_id("12345", &id), 0);
    cr_assert_eq(id, 12345);
    cr_assert_eq(api_last_event_id("9223372036854775807", &id), 0);
    cr_assert_eq(id, INT64_MAX);
    /* Were accepted: out of range (saturated to INT64_MAX), signed, spaced. */
    cr_assert_eq(api_last_event_id("9223372036854775808", &id), -1);
    cr_assert_eq(api_last_event_id("+5", &id), -1);
    cr_assert_eq(api_last_event_id(" 5", &id), -1);
    cr_assert_eq(api_last_event_id("-1", &id), -1);
    cr_assert_eq(api_last_event_id("", &id), -1);
    cr_assert_eq(api_last_event_id("7x", &id), -1);
}

Test(headers, bearer_and_idempotency_key)
{
    cr_assert_str_eq(auth_bearer_token("Bearer sk_1"), "sk_1");
    cr_assert_str_eq(auth_bearer_token("bearer   sk_2"), "sk_2");
    cr_assert_null(auth_bearer_token("Basic dXNlcg=="));
    cr_assert_null(auth_bearer_token("Bearer"));
    cr_assert_null(auth_bearer_token(NULL));
    cr_assert(gen_service_idem_key_ok("k"));
    char key[300];
    memset(key, 'x', sizeof key);
    key[255] = '\0';
    cr_assert(gen_service_idem_key_ok(key));
    key[255] = 'x';
    key[256] = '\0';
    cr_assert_not(gen_service_idem_key_ok(key));
    cr_assert_not(gen_service_idem_key_ok(""));
}

Test(headers, throttle_address_ipv6_by_64)
{
    char a[64], b[64];
    auth_throttle_address("203.0.113.7", a, sizeof a);
    cr_assert_str_eq(a, "203.0.113.7");
    auth_throttle_address("2001:db8:1:2:aaaa::1", a, sizeof a);
    auth_throttle_address("2001:db8:1:2:ffff:ffff:ffff:fffe", b, sizeof b);
    cr_assert_str_eq(a, "2001:db8:1:2::/64");
    cr_assert_str_eq(a, b, "one /64 counts as one address");
    auth_throttle_address("2001:db8:1:3::1", b, sizeof b);
    cr_assert_str_neq(a, b, "the next /64 is another");
    auth_throttle_address("::ffff:198.51.100.1", a, sizeof a);
    cr_assert_str_eq(a, "198.51.100.1", "an IPv4 client of a dual-stack socket is itself");
}
