/*
 * ids — time-sortable ids and hashed secrets, on libsodium's CSPRNG.
 */
#include "ids.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int ids_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

void ids_new_at(const char *prefix, int64_t ms, char out[ID_LEN])
{
    unsigned char rnd[10];
    randombytes_buf(rnd, sizeof rnd);
    size_t p = (size_t)snprintf(out, ID_LEN, "%s_", prefix);
    /* 48-bit time: 10 chars (50 bits, top two zero). */
    uint64_t t = (uint64_t)ms & 0xFFFFFFFFFFFFull;
    for (int i = 9; i >= 0; i--) {
        out[p + (size_t)i] = crockford[t & 31];
        t >>= 5;
    }
    /* 80 random bits: 16 chars. */
    for (int i = 0; i < 16; i++) {
        int bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)rnd[byte] << 8 | (byte + 1 < 10 ? rnd[byte + 1] : 0);
        out[p + 10 + (size_t)i] = crockford[(v >> (11 - shift)) & 31];
    }
    out[p + 26] = '\0';
}

void ids_new(const char *prefix, char out[ID_LEN])
{
    ids_new_at(prefix, now_ms(), out);
}

bool ids_valid(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (!s || strncmp(s, prefix, pl) != 0 || s[pl] != '_' || strlen(s) != pl + 27) return false;
    for (const char *c = s + pl + 1; *c; c++)
        if (!strchr(crockford, *c)) return false;
    return true;
}

void ids_new_secret(const char *prefix, char *out, size_t outlen)
{
    unsigned char rnd[32];
    char b64[64];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2base64(b64, sizeof b64, rnd, sizeof rnd, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(out, outlen, "%s_%s", prefix, b64);
}

void ids_hash_secret(const char *secret, char out[SECRET_HASH_LEN])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)secret, strlen(secret), NULL, 0);
    sodium_bin2hex(out, SECRET_HASH_LEN, h, sizeof h);
}

uint32_t ids_random_below(uint32_t upper)
{
    return randombytes_uniform(upper);
}
