/*
 * intake — the listening socket: accepts connections, enforces the
 * per-address and total connection limits and the header deadline until a
 * connection is handed on, and sorts each one into a lane for http.c.
 *
 * DESIGN. An open SSE stream costs what its libmicrohttpd connection
 * costs, and most of that is MHD's per-connection memory pool, which must
 * be large for API requests (an 8 KB header line) and is sized once per
 * daemon, before the request is read. So http.c runs two daemons without
 * listening sockets of their own, and one intake thread owns the socket:
 * it waits (epoll, never blocking) until a new connection's first bytes
 * show what it is, peeking without consuming them, then passes the
 * descriptor to one daemon with MHD_add_connection. A `GET` of an event
 * stream whose whole header block fits INTAKE_STREAM_HEAD goes to the
 * stream lane (a small pool); everything else, at the first byte that
 * rules a stream out, to the API lane. The peek reads a request-line
 * prefix and looks for the blank line that ends the headers: a sorter, not
 * a parser; MHD parses every request. A wrong guess costs memory, never
 * behaviour: both lanes run the same handlers.
 */
#ifndef SS_INTAKE_H
#define SS_INTAKE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header block (request line included) the stream lane takes. */
#define INTAKE_STREAM_HEAD 1024

enum intake_lane { INTAKE_API, INTAKE_STREAM };

/* Takes over fd (a connected, non-blocking socket) in lane; addr is its
 * peer. Returns false when it refused the connection, fd closed. */
typedef bool (*intake_handoff_fn)(int fd, const struct sockaddr *addr, socklen_t addr_len,
                                  enum intake_lane lane);

/* Listens on addr; *port gets the bound port. Nothing is accepted until
 * intake_start, so what depends on the port (the derived public URL) can
 * be settled first. 0, or -1 with *err (caller frees). */
int intake_listen(const struct sockaddr *addr, socklen_t addr_len, uint16_t *port, char **err);
/* Starts the intake thread on the socket intake_listen opened. max_total:
 * connections open at once; max_per_address: from one address (0: no
 * limit); header_timeout_ms: from accept until the connection is handed
 * on. 0, or -1 with *err (caller frees). */
int intake_start(unsigned max_total, unsigned max_per_address, int header_timeout_ms,
                 intake_handoff_fn handoff, char **err);
/* Closes the listening socket; connections already accepted go on. */
void intake_quiesce(void);
/* Stops the thread and closes the connections not yet handed on (or only
 * the listening socket, when the thread never started). */
void intake_stop(void);
/* Connections open now, handed on or not yet (for /metrics). */
unsigned intake_open(void);
/* A handed-on connection from addr has closed: it no longer counts. */
void intake_release(const struct sockaddr *addr);
/* mono_ms when the connection now on fd was accepted (for the header
 * deadline after the hand-off), or -1 when unknown. */
int64_t intake_accepted_at(int fd);

#endif
