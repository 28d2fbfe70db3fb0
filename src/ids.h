/*
 * ids — identifiers and secrets.
 *
 * Ids are "<prefix>_" + 26 Crockford base32 characters: 48 bits of
 * millisecond time then 80 random bits (ULID layout), so they sort by
 * creation time and cannot be guessed. Secrets (API keys, session tokens)
 * are random and stored only as a BLAKE2b hash.
 */
#ifndef SS_IDS_H
#define SS_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ID_LEN 40          /* buffer size for any id, with its NUL */
#define SECRET_HASH_LEN 65 /* 64 hex chars + NUL */

/* Call once at start (initialises libsodium). 0 or -1. */
int ids_init(void);
/* out gets e.g. "gen_01JD3V6Z8Q4W3T9X0M2N5P7R1S". prefix ≤ 4 chars. */
void ids_new(const char *prefix, char out[ID_LEN]);
/* Like ids_new with an explicit time (tests). */
void ids_new_at(const char *prefix, int64_t ms, char out[ID_LEN]);
/* true if s looks like an id with that prefix. */
bool ids_valid(const char *s, const char *prefix);
/* A new secret "<prefix>_" + 43 url-safe base64 chars (256 bits). out ≥ 64. */
void ids_new_secret(const char *prefix, char *out, size_t outlen);
/* Hex BLAKE2b-256 of a secret, for storage and lookup. */
void ids_hash_secret(const char *secret, char out[SECRET_HASH_LEN]);
/* Uniform random integer in [0, upper). */
uint32_t ids_random_below(uint32_t upper);

#endif
