/*
 * net — the one outbound HTTP loop. Every transfer the service makes goes
 * through here: input image fetches, provider calls, output downloads and
 * webhook deliveries. The address rules (SPEC §4: no loopback, private,
 * link-local or metadata addresses unless the operator allows them with
 * --allow-hosts) live here too and are applied to every connection curl
 * opens, after DNS, on every redirect hop, so no transfer can bypass them.
 *
 * DESIGN. One thread runs a libcurl multi handle. net_submit() may be
 * called from any thread: it appends the request to a hand-off list under
 * a mutex and wakes the loop with curl_multi_wakeup; the loop adds it to
 * the multi handle (or to its timer list when it is delayed), drives every
 * transfer with curl_multi_poll, and when one ends calls the request's
 * on_done on the loop thread. on_done must be quick: it may copy, decode
 * base64, queue more requests or hand the response to another thread, but
 * never write to the store, decode images or sleep. Thousands of transfers
 * can be in flight on this one thread. Cancellation is a flag the caller
 * owns (an atomic_bool it keeps valid until on_done): the loop looks at it
 * at least every NET_CANCEL_POLL_MS and ends the transfer with
 * NET_ECANCELLED.
 */
#ifndef SS_NET_H
#define SS_NET_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

#define NET_CANCEL_POLL_MS 200
#define NET_DEFAULT_MAX_BYTES (10 * 1024 * 1024)
#define NET_DEFAULT_TIMEOUT_MS 20000
#define NET_CONNECT_TIMEOUT_MS 5000

/* What ended a transfer (net_response.error). */
enum {
    NET_OK = 0,          /* a complete HTTP response arrived (any status) */
    NET_ECONNECT = -1,   /* DNS, connect, TLS or a dropped connection */
    NET_ETIMEOUT = -2,   /* the request's time limit passed */
    NET_ETOOBIG = -3,    /* the body passed the request's byte limit */
    NET_EREFUSED = -4,   /* the address rules refused the destination */
    NET_ECANCELLED = -5, /* the caller's cancel flag was raised */
    NET_EINVALID = -6,   /* the URL is malformed or not http(s) */
    NET_EREDIRECTS = -7, /* too many redirects */
    NET_EINTERNAL = -8,  /* out of resources, or the loop is not running */
};

typedef struct net_request net_request; /* opaque; owned by the caller until net_submit */

typedef struct net_response {
    int error;                 /* NET_OK or NET_E* */
    const char *reason;        /* readable, for NET_E*: no secrets, no request headers */
    long status;               /* HTTP status of the final response, 0 when none */
    buf body;                  /* the final response's body; on_done may steal body.data */
    const char *effective_url; /* the URL the final response came from */
    buf headers;               /* the final response's header block (net_response_header) */
} net_response;

/* Called once per submitted request, on the loop thread (see DESIGN). The
 * response and request are freed when it returns. */
typedef void (*net_done_fn)(net_request *r, net_response *resp, void *ctx);

/* Enables outbound HTTP; the loop thread starts with the first request.
 * allow_hosts: comma-separated host names or CIDRs exempt from the address
 * rules (NULL or "" for none). 0, or -1. */
int net_start(const char *allow_hosts);
/* Checks every entry of an --allow-hosts list without applying it: 0, or
 * -1 with *err (caller frees) naming the first malformed entry. */
int net_check_allow_hosts(const char *allow_hosts, char **err);
/* Cancels every transfer still in flight (their on_done run with
 * NET_ECANCELLED), then joins the thread. Safe when not running. */
void net_stop(void);

/* A new request (method "GET", "POST", "DELETE", ...). Defaults: time
 * limit NET_DEFAULT_TIMEOUT_MS, body limit NET_DEFAULT_MAX_BYTES, no
 * redirects followed. Never NULL. */
net_request *net_request_new(const char *method, const char *url);
/* Adds a request header line ("Name: value"); copied. */
void net_request_header(net_request *r, const char *line);
/* Sets the request body (copied) and its Content-Type. */
void net_request_body(net_request *r, const char *content_type, const void *data, size_t len);
/* Adds a multipart/form-data part: a plain field (filename NULL) or a file
 * (filename and content_type set). data is copied. */
void net_request_part(net_request *r, const char *name, const char *filename,
                      const char *content_type, const void *data, size_t len);
void net_request_limits(net_request *r, int timeout_ms, size_t max_bytes);
/* Follows up to n redirects (GET only); each hop is address-checked. */
void net_request_redirects(net_request *r, int n);
/* Sends nothing until delay_ms after net_submit (a polling backoff). */
void net_request_delay(net_request *r, int64_t delay_ms);
/* A delayed request starts at once (within NET_CANCEL_POLL_MS) when *flag
 * becomes true — e.g. a webhook said the thing it polls for is ready. The
 * flag must stay valid until on_done has returned. */
void net_request_wake_flag(net_request *r, const atomic_bool *flag);
/* The transfer ends with NET_ECANCELLED soon after *flag becomes true.
 * The flag must stay valid until on_done has returned. */
void net_request_cancel_flag(net_request *r, const atomic_bool *flag);
/* Frees a request that was never submitted. */
void net_request_free(net_request *r);

/* Hands r to the loop (ownership moves, also on failure). on_done is
 * called exactly once, from the loop thread — or, when the loop is not
 * running, from this thread before net_submit returns (error
 * NET_EINTERNAL). */
void net_submit(net_request *r, net_done_fn on_done, void *ctx);

/* Submits r and waits for its end (for threads that may block: the slow
 * handler pool, the CLI). *out receives the response; its body and
 * effective_url are the caller's to free with net_response_free. */
void net_perform(net_request *r, net_response *out);
void net_response_free(net_response *resp);

/* A header of the final response (case-insensitive name), NULL when
 * absent. Valid inside on_done only (net_perform: until
 * net_response_free). */
const char *net_response_header(const net_response *resp, const char *name);

/* Retry-After of the final response in milliseconds (delta-seconds or an
 * HTTP date), or -1 when absent or unreadable. */
int64_t net_retry_after_ms(const net_response *resp);

/* Requests submitted and not yet ended (waiting, delayed or transferring),
 * for /metrics. Any thread. */
int net_in_flight(void);

/* ---- address rules ---- */

/* Checks a URL before anything is fetched: http(s), ≤ 2048 characters, no
 * spaces or control characters, a host; then resolves the host (this may
 * block: not for the loop thread) and refuses it when any of its
 * addresses is loopback, private, link-local or metadata and the host is
 * not allow-listed. 0, or NET_EINVALID / NET_EREFUSED with *error (caller
 * frees). `what` names the URL in messages ("image URL", "webhook URL"). */
int net_check_url(const char *url, const char *what, char **error);

/* Whether the address rules refuse a socket address (allow-list applied). */
bool net_addr_refused(const struct sockaddr *sa);

#endif
