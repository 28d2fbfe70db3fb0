/*
 * image_fixture — shared by the image tests (test_local, test_worn,
 * test_media): a file of tests/fixtures (or $FIXTURES) read whole.
 * Header-only: each test binary includes it once.
 */
#ifndef SS_IMAGE_FIXTURE_H
#define SS_IMAGE_FIXTURE_H

#include <criterion/criterion.h>
#include <stdlib.h>

#include "provider.h"
#include "util.h"

/* The file's bytes; the caller frees them. */
static inline buf read_fixture(const char *name)
{
    const char *dir = getenv("FIXTURES") ? getenv("FIXTURES") : "tests/fixtures";
    char *path = xasprintf("%s/%s", dir, name);
    buf b = {0};
    cr_assert_eq(util_read_file(path, 32 << 20, &b), 0, "cannot read %s", path);
    free(path);
    return b;
}

/* The same as a provider image; the caller frees .data. */
static inline provider_image load_fixture(const char *name)
{
    buf b = read_fixture(name);
    provider_image img = {.data = (unsigned char *)b.data, .len = b.len};
    return img;
}

#endif
