/*
 * provider_remote — what the hosted-model adapters (provider_openai.c,
 * provider_replicate.c) share: how an HTTP outcome maps to a provider
 * result (SPEC §7: 429, 5xx, connection errors and timeouts are
 * transient, other 4xx are rejections), and the configured base URLs and
 * time limit. Private to the adapters.
 */
#ifndef SS_PROVIDER_REMOTE_H
#define SS_PROVIDER_REMOTE_H

#include "net.h"
#include "provider.h"

/* Largest answer read from a provider (OpenAI's base64 images are big). */
#define PROVIDER_REMOTE_MAX_BYTES (64 * 1024 * 1024)

/* The result an HTTP outcome means, PROVIDER_OK for a 2xx. For anything
 * else *error is a message for the user (caller frees) that names `who`
 * ("OpenAI", "Replicate") and, for a 4xx, the provider's own message
 * (`provider_message`, may be NULL) — never a credential. A 429's
 * Retry-After goes to job->retry_after_ms. */
int provider_remote_outcome(provider_job *job, const net_response *resp, const char *who,
                            const char *provider_message, char **error);

/* The format of encoded image bytes from their magic number ("png",
 * "jpeg", "webp"), or NULL. */
const char *provider_remote_sniff(const unsigned char *data, size_t len);

/* A configured base URL (trailing slashes dropped) joined with path
 * ("/v1/..."). Caller frees. */
char *provider_remote_url(const char *base, const char *path);

/* Adds "Authorization: Bearer <secret>", wiping the temporary line. */
void provider_remote_auth(net_request *r, const char *secret);

/* Per-call time limit (--provider-timeout) in milliseconds. */
int provider_remote_timeout_ms(void);

#endif
