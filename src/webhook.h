/*
 * webhook — outbound webhooks (SPEC §8): which committed events become
 * deliveries, the message body, the Standard Webhooks signature, the retry
 * schedule, and the dispatcher thread that turns the durable events table
 * into deliveries and sends them through net.h. The endpoints and
 * deliveries live in the store (store.h, "outbound webhooks"); the routes
 * are api_webhook.c's.
 */
#ifndef SS_WEBHOOK_H
#define SS_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The event types an endpoint may subscribe to, NULL-terminated. */
extern const char *const webhook_types[];
bool webhook_type_valid(const char *type);

/* "whsec_" + base64 of 24 random bytes, NUL-terminated. */
#define WEBHOOK_SECRET_LEN 48
void webhook_new_secret(char out[WEBHOOK_SECRET_LEN]);

/* "v1," + base64 HMAC-SHA256 over "{msg_id}.{timestamp}.{body}", keyed
 * with the base64-decoded part of the secret after "whsec_". 0, or -1
 * when the secret is malformed. */
#define WEBHOOK_SIGNATURE_LEN 64
int webhook_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
                 size_t len, char out[WEBHOOK_SIGNATURE_LEN]);

/* The receiving side (e.g. Replicate's webhooks to us): whether
 * `signatures` (the webhook-signature header: space-separated
 * "v1,<base64>" entries) holds webhook_sign's signature of the message.
 * Compared in constant time. False for a malformed secret. */
bool webhook_verify(const char *secret, const char *msg_id, int64_t timestamp, const char *body,
                    size_t len, const char *signatures);

/* The webhook type an event stands for, or NULL when it is none: a
 * balance event is "balance.changed"; a generation event is
 * "generation.<status>" for processing, completed, failed and cancelled,
 * but only when its status differs from that of the generation's previous
 * event (prev_data, NULL when there is none) — progress and stage events
 * repeat the status and are not transitions. */
const char *webhook_event_type(const store_event *ev, const char *prev_data);
/* Whether the comma-separated list `events` contains type. */
bool webhook_subscribed(const char *events, const char *type);
/* The body sent: {"type":..,"timestamp":"<ISO 8601 of at_ms>","data":data}.
 * data is JSON text, copied verbatim. A new string (caller frees). */
char *webhook_payload(const char *type, int64_t at_ms, const char *data);
/* The delay before the next attempt once `tries` attempts have failed
 * (1 = the first), or -1 when it has run out: 5 s, 5 min, 30 min, 2 h,
 * 5 h, 10 h, 10 h, each scaled by base_ms / 5000. */
int64_t webhook_retry_delay_ms(int tries, int64_t base_ms);

/* Starts the dispatcher on s (cfg.webhook_retry_base_ms,
 * cfg.events_keep_hours). net_start must have run. 0 or -1. */
int webhook_start(store_t *s);
/* Wakes the dispatcher: something was committed (the commit hook) or a
 * delivery was made due. Cheap; any thread. */
void webhook_notify(void);
/* Stops it: waits briefly for attempts in flight and records them; any
 * still open stay leased in the store and are retried when their lease
 * runs out. Safe when not running. */
void webhook_stop(void);

#endif
