/*
 * media — images in and out: upload validation (decoded with libvips before
 * acceptance), storage under DATA/media with unguessable names, fetching
 * image URLs (own /media URLs from disk; remote ones through net.c under
 * size and time limits and its address rules), and storing result images.
 *
 * URLs handed out look like PUBLIC_URL/media/<kind>/<name>.<ext>, where kind
 * is "u" (uploads) or "r" (results) and name is 32 random base32 chars.
 */
#ifndef SS_MEDIA_H
#define SS_MEDIA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "provider.h"
#include "util.h"

#define MEDIA_MAX_BYTES (10 * 1024 * 1024)
#define MEDIA_MAX_PIXELS (40 * 1000 * 1000)
#define MEDIA_MAX_URL 2048

enum {
    MEDIA_EINVALID = -1,   /* the image or URL breaks a rule: *error says which */
    MEDIA_EINTERNAL = -2,  /* disk or library failure */
    MEDIA_ECANCELLED = -3, /* the caller's cancel flag was raised mid-transfer */
};

/* Call once before anything else (and net_start before fetching).
 * data_dir: DATA; public_url: the base of handed-out URLs. */
int media_init(const char *data_dir, const char *public_url);
void media_shutdown(void);

/* Decodes enough of buf to be sure it is a JPEG/PNG/WebP within the
 * limits; fills format/width/height of *info (data untouched).
 * MEDIA_EINVALID with *error (caller frees). */
int media_probe(const void *data, size_t len, provider_image *info, char **error);

/* Probes, then stores an upload; *url_out (caller frees) is its public URL
 * and *info its format and size. */
int media_save_upload(const void *data, size_t len, provider_image *info, char **url_out,
                      char **error);

/* Makes an image URL our own: an own /media URL is checked and returned
 * as it is (a copy); any other is fetched and validated (media_fetch) and
 * stored as a new upload, whose URL is returned, so later readers use
 * exactly the bytes validated now. 0 with *own_url (caller frees), or
 * MEDIA_E* with *error (caller frees). Blocks for up to the fetch timeout. */
int media_import(const char *url, char **own_url, char **error);

/* Checks a URL's shape and address rules without fetching it (own /media
 * URLs must name an existing file). */
int media_check_url(const char *url, char **error);

/* True when url points into this server's own /media. */
bool media_is_own_url(const char *url);

/* Loads the image behind a URL into *out (caller frees with
 * provider_image_free) and probes it. Own /media URLs read the file;
 * others are fetched (timeout 20 s, ≤ MEDIA_MAX_BYTES, at most 3
 * redirects, each hop address-checked). A transfer stops soon after
 * *cancel (may be NULL) becomes true: MEDIA_ECANCELLED. */
int media_fetch(const char *url, const atomic_bool *cancel, provider_image *out, char **error);

/* Fits a provider's result to the exact aspect ratio asked ("W:H"): a
 * centred crop, never a scale-up; re-encoded in its own format only when
 * a crop was needed. Every pixel kept is decoded (a provider may send
 * anything): MEDIA_EINVALID with *error when it is not an image we take
 * or does not decode. On 0, *img holds the fitted bytes, its format,
 * width and height. */
int media_fit_aspect(provider_image *img, const char *aspect_ratio, char **error);

/* Re-encodes *img in format ("jpeg" | "png" | "webp"; NULL or "" keeps
 * it) when it is in another one, so parameters.output_format holds for
 * every provider's results; JPEG gets any transparency flattened on white.
 * 0, or MEDIA_EINVALID with *error (caller frees) when it does not decode. */
int media_convert(provider_image *img, const char *format, char **error);

/* Stores one result image of a generation; *url_out (caller frees). The
 * file is not yet durable: media_sync_results makes it so. */
int media_store_result(const char *gen_id, int index, const provider_image *img, char **url_out);
/* Puts every result file stored so far on disk, names included (one
 * syncfs for all of them). 0, or -1 with errno. */
int media_sync_results(void);

/* Removes the file behind an own /media URL (no-op for other URLs). */
void media_delete_url(const char *url);

/* Maps a request path "/media/<kind>/<file>" to a file on disk, rejecting
 * anything else (no "..", no unknown kinds). Returns a new path or NULL;
 * *content_type is a static string. */
char *media_path_for_request(const char *request_path, const char **content_type);

#endif
