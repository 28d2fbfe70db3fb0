/*
 * test_webhook — the pure parts of webhook.c: the Standard Webhooks
 * signature (the specification's own example vector, and an independent
 * HMAC through libsodium's one-shot API), secrets, which events become
 * which types, the body, and the retry schedule.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "ids.h"
#include "webhook.h"

static void setup(void)
{
    cr_assert_eq(ids_init(), 0);
}

TestSuite(webhook, .init = setup);

/* From the Standard Webhooks specification and its reference libraries:
 * secret, msg id, timestamp and payload → this signature. */
Test(webhook, signature_matches_the_standard_webhooks_example)
{
    const char *payload = "{\"test\": 2432232314}";
    char sig[WEBHOOK_SIGNATURE_LEN];
    cr_assert_eq(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                              "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, payload, strlen(payload),
                              sig),
                 0);
    cr_assert_str_eq(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

Test(webhook, verify_finds_the_signature_among_several)
{
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *id = "msg_p5jXN8AQM9LWM0D4loKWxJek", *payload = "{\"test\": 2432232314}";
    const char *good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    size_t n = strlen(payload);
    cr_assert(webhook_verify(secret, id, 1614265330, payload, n, good));
    char several[200];
    snprintf(several, sizeof several, "v1,bm90IHRoaXMgb25l %s", good);
    cr_assert(webhook_verify(secret, id, 1614265330, payload, n, several));
    cr_assert_not(webhook_verify(secret, id, 1614265331, payload, n, good), "another timestamp");
    cr_assert_not(webhook_verify(secret, "msg_other", 1614265330, payload, n, good));
    cr_assert_not(webhook_verify(secret, id, 1614265330, "{}", 2, good), "another body");
    cr_assert_not(webhook_verify(secret, id, 1614265330, payload, n, good + 3), "no v1, prefix");
    cr_assert_not(webhook_verify(secret, id, 1614265330, payload, n, ""));
    cr_assert_not(
        webhook_verify("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, 1614265330, payload, n, good),
        "a secret without whsec_");
}

Test(webhook, signature_of_a_new_secret_checks_independently)
{
    char secret[WEBHOOK_SECRET_LEN];
    webhook_new_secret(secret);
    cr_assert(strncmp(secret, "whsec_", 6) == 0);
    cr_assert_eq(strlen(secret), 6 + 32, "base64 of 24 bytes: %s", secret);
    unsigned char key[24];
    size_t klen = 0;
    cr_assert_eq(sodium_base642bin(key, sizeof key, secret + 6, 32, NULL, &klen, NULL,
                                   sodium_base64_VARIANT_ORIGINAL),
                 0);
    cr_assert_eq(klen, 24);
    /* HMAC-SHA256 with a 24-byte key = SHA-256 HMAC over a zero-padded
     * 32-byte key (RFC 2104): libsodium's fixed-key call computes that. */
    unsigned char k32[32] = {0};
    memcpy(k32, key, 24);
    const char *msg = "msg_1.1700000000.{\"a\":1}";
    unsigned char mac[32];
    crypto_auth_hmacsha256(mac, (const unsigned char *)msg, strlen(msg), k32);
    char want[64] = "v1,";
    sodium_bin2base64(want + 3, sizeof want - 3, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    char sig[WEBHOOK_SIGNATURE_LEN];
    cr_assert_eq(webhook_sign(secret, "msg_1", 1700000000, "{\"a\":1}", 7, sig), 0);
    cr_assert_str_eq(sig, want);
    char other[WEBHOOK_SECRET_LEN];
    webhook_new_secret(other);
    cr_assert_str_neq(secret, other);
    cr_assert_eq(webhook_sign("nope", "msg_1", 1, "x", 1, sig), -1);
    cr_assert_eq(webhook_sign("whsec_!!!", "msg_1", 1, "x", 1, sig), -1);
}

static const char *type_of(const char *type, const char *data, const char *prev)
{
    store_event ev = {.data = (char *)data};
    snprintf(ev.type, sizeof ev.type, "%s", type);
    return webhook_event_type(&ev, prev);
}

Test(webhook, only_status_transitions_and_balance_changes_are_types)
{
    const char *pending = "{\"status\":\"pending\",\"progress\":0}";
    const char *proc = "{\"status\":\"processing\",\"progress\":0}";
    const char *proc50 = "{\"status\":\"processing\",\"progress\":50}";
    const char *done = "{\"status\":\"completed\",\"progress\":100}";
    cr_assert_null(type_of("generation", pending, NULL));
    cr_assert_str_eq(type_of("generation", proc, pending), "generation.processing");
    cr_assert_str_eq(type_of("generation", proc, NULL), "generation.processing",
                     "created and started at once");
    cr_assert_null(type_of("generation", proc50, proc), "progress is not a transition");
    cr_assert_str_eq(type_of("generation", done, proc50), "generation.completed");
    cr_assert_str_eq(type_of("generation", "{\"status\":\"failed\"}", proc), "generation.failed");
    cr_assert_str_eq(type_of("generation", "{\"status\":\"cancelled\"}", pending),
                     "generation.cancelled");
    cr_assert_str_eq(type_of("balance", "{\"tokenBalance\":3}", NULL), "balance.changed");
    cr_assert_null(type_of("generation", "not json", NULL));
    cr_assert(webhook_subscribed("generation.failed,balance.changed", "balance.changed"));
    cr_assert(!webhook_subscribed("generation.failed,balance.changed", "balance"));
    cr_assert(!webhook_subscribed("", "balance.changed"));
    cr_assert(webhook_type_valid("generation.cancelled"));
    cr_assert(!webhook_type_valid("generation.pending"));
}

Test(webhook, body_and_schedule)
{
    char *b = webhook_payload("balance.changed", 1700000000123LL, "{\"tokenBalance\":7}");
    cr_assert_str_eq(b, "{\"type\":\"balance.changed\",\"timestamp\":\"2023-11-14T22:13:20.123Z\","
                        "\"data\":{\"tokenBalance\":7}}");
    free(b);
    const int64_t want[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};
    for (int i = 0; i < 7; i++)
        cr_assert_eq(webhook_retry_delay_ms(i + 1, 5000), want[i], "after attempt %d", i + 1);
    cr_assert_eq(webhook_retry_delay_ms(8, 5000), -1, "then it has failed");
    cr_assert_eq(webhook_retry_delay_ms(1, 100), 100, "the base is the first delay");
    cr_assert_eq(webhook_retry_delay_ms(2, 100), 6000, "the others scale with it");
}
