/*
 * fuzz_probe — libFuzzer target: arbitrary bytes as an uploaded image.
 * media_probe must accept only decodable JPEG/PNG/WebP within the limits
 * and refuse everything else with a message, never crash.
 */
#include <stdlib.h>
#include <string.h>

#include "media.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    if (!ready) ready = media_init("/tmp/stylestudio-fuzz", "http://127.0.0.1:1") == 0;
    provider_image info;
    memset(&info, 0, sizeof info);
    char *error = NULL;
    int rc = media_probe(data, size, &info, &error);
    if (rc == 0 && (info.width <= 0 || info.height <= 0)) abort();
    if (rc != 0 && !error) abort();
    free(error);
    return 0;
}
