/*
 * auth — who is calling: API keys (Bearer sk_...), the ss_session cookie,
 * the CSRF rule for cookie-authenticated writes, Argon2id passwords, and
 * creating accounts (sign-up and the operator CLI share it).
 */
#ifndef SS_AUTH_H
#define SS_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "store.h"

#define AUTH_COOKIE "ss_session"
#define AUTH_SESSION_DAYS 30

enum {
    AUTH_ENONE = -1, /* no credentials, or unknown/expired ones */
    AUTH_ECSRF = -2, /* cookie write from a foreign origin */
    AUTH_EINTERNAL = -3,
    AUTH_EUNAVAILABLE = -4, /* the store cannot be reached now */
};

/* The key of an "Authorization: Bearer KEY" header (a pointer into it,
 * spaces after "Bearer" skipped), or NULL for any other scheme. Pure. */
const char *auth_bearer_token(const char *authorization);
/* Authenticates the request into *user, from the credential cache when it
 * has a fresh entry (at most 1 s old; see auth.c). */
int auth_request(store_t *s, http_req *r, user_record *user);
/* Tells the credential cache that the user's record, keys or sessions
 * changed (NULL: anyone's): entries filled before the call are not used. */
void auth_forget(const char *user_id);
/* True when the request's Origin (or Referer) is this server's own. */
bool auth_same_origin(http_req *r);

/* Argon2id (libsodium crypto_pwhash_str). out must hold 128 bytes. 0 or -1. */
int auth_hash_password(const char *password, char out[128]);
bool auth_check_password(const char *hash, const char *password);
/* Why a new password is refused, or NULL when it is acceptable: 8 to 256
 * bytes, and not whitespace only (eight spaces are not a password). */
const char *auth_password_problem(const char *password);

/* The password-hash gate (see auth.c DESIGN). Before a hash: 0 when a slot
 * is taken now (go on); 1 when r is parked and then(r) will run holding a
 * slot (return from the handler); -1 when the queue is full (answer 503).
 * Whoever holds a slot calls auth_hash_gate_leave once the hash is done. */
int auth_hash_gate_enter(http_req *r, http_handler_fn then);
void auth_hash_gate_leave(void);
/* Hashes verified so far, and the gate's running / parked / peak running. */
void auth_hash_stats(long long *total, int *running, int *waiting, int *peak);

/* The address sign-in throttling counts ip by: an IPv4 address (also one
 * mapped into IPv6) as it is, an IPv6 one by its /64 ("2001:db8:1:2::/64"). */
void auth_throttle_address(const char *ip, char *out, size_t n);
/* Sign-in throttling, counted in store s (auth.c "failed sign-ins"): sets
 * *wait to the seconds until the folded email may be tried from address ip
 * again (0: now; the first counter found over its limit answers); and
 * records an attempt's outcome (only failures count; a
 * success clears that address's failures on the email). STORE_OK or a
 * STORE_E* code (then nothing was recorded). */
int auth_login_throttled(store_t *s, const char *email, const char *ip, int *wait);
int auth_login_result(store_t *s, const char *email, const char *ip, bool ok);

/* Starts a session for user_id and sets the cookie on the reply. 0 or -1. */
int auth_session_start(store_t *s, http_req *r, const char *user_id);
/* Ends the request's session (if any) and clears the cookie. */
void auth_session_end(store_t *s, http_req *r);

/* Lowercases an email address in place (accounts are found by it). */
void auth_email_fold(char *email);

/* Creates an account — the one way users are made (sign-up and the CLI):
 * a new id, email folded to lowercase, name, role ("user" | "admin"),
 * plan free, and a grant ledger row when grant > 0. password_hash (from
 * auth_hash_password) may be NULL for an account that signs in with API
 * keys only. *out gets the record as written. STORE_OK, STORE_EDUPLICATE
 * when the email has an account, or another STORE_E* code. */
int auth_user_create(store_t *s, const char *email, const char *name, const char *role,
                     const char *password_hash, int64_t grant, user_record *out);

/* A new API key for the user: *key_out (shown once, caller frees) and the
 * stored row's id in key_id. 0 or a STORE_E* code. */
int auth_key_create(store_t *s, const char *user_id, const char *name, char key_id[ID_LEN],
                    char **key_out);

#endif
