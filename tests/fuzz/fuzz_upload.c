/*
 * fuzz_upload — libFuzzer target: an uploaded body as POST /api/upload
 * stores it (media_save_upload: sniffed as JPEG/PNG/WebP, the size and
 * megapixel limits checked from the header before decoding, every pixel
 * decoded, then saved under an unguessable name). Accepted means a known
 * format, 1..40 megapixels, and a /media URL that resolves to the saved
 * file; refused means a message. The seeds include decompression bombs
 * (headers claiming 50000×50000), which must be refused. Each accepted
 * file is deleted again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "media.h"

#define PUBLIC "http://127.0.0.1:1"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    static char dir[64];
    if (!ready) {
        snprintf(dir, sizeof dir, "/tmp/ss-fuzz-upload-%d", (int)getpid());
        mkdir(dir, 0700);
        ready = media_init(dir, PUBLIC) == 0;
        if (!ready) abort();
    }
    provider_image info;
    memset(&info, 0, sizeof info);
    char *url = NULL, *error = NULL;
    int rc = media_save_upload(data, size, &info, &url, &error);
    if (rc == 0) {
        if (info.width <= 0 || info.height <= 0) abort();
        if ((long long)info.width * info.height > MEDIA_MAX_PIXELS) abort();
        if (size > MEDIA_MAX_BYTES) abort();
        if (strcmp(info.format, "jpeg") && strcmp(info.format, "png") &&
            strcmp(info.format, "webp"))
            abort();
        if (!url || !media_is_own_url(url)) abort();
        const char *type = NULL;
        char *path = media_path_for_request(url + strlen(PUBLIC), &type);
        struct stat st;
        if (!path || stat(path, &st) != 0 || (size_t)st.st_size != size) abort();
        free(path);
        media_delete_url(url);
    } else if (!error) {
        abort(); /* a refusal says why */
    }
    free(url);
    free(error);
    return 0;
}
