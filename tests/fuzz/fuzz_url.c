/*
 * fuzz_url — libFuzzer target: the URL and address checker (net.c), the
 * rules that stand between a client's URL and an outbound connection
 * (SSRF). Two parts, picked by the first byte:
 *   - net_check_url on the bytes as a URL, with the resolver replaced
 *     (fake_resolver.h: literals as glibc, names from a table of public
 *     and local addresses, some resolving to both). A name
 *     must be refused exactly when one of its addresses is local and the
 *     name is not on the allow-list; an accepted URL must be http(s),
 *     ≤ 2048 bytes, without spaces or control characters.
 *   - net_addr_refused on 16 raw bytes as IPv6 and as IPv4: an
 *     IPv4-mapped or NAT64 address is refused exactly as its IPv4 is.
 * The allow-list (net_start) holds a name, an IPv4 CIDR and an IPv6 CIDR.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fake_resolver.h"
#include "net.h"

#define ALLOW "allowed.test,10.9.0.0/16,[fd00:9::]/32"

static void check_url(const char *url, size_t len)
{
    char *error = NULL;
    fake_last_local = -1;
    int rc = net_check_url(url, "image URL", &error);
    if ((rc == 0) != (error == NULL)) abort(); /* an error says why, a pass says nothing */
    if (rc != 0 && rc != NET_EINVALID && rc != NET_EREFUSED) abort();
    if (rc == 0) {
        if (len > 2048) abort();
        if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) abort();
        for (const char *c = url; *c; c++)
            if ((unsigned char)*c <= 0x20 || *c == 0x7f) abort();
        if (fake_last_local == 1) abort(); /* a name with a local address passed */
    }
    if (rc == NET_EREFUSED && fake_last_local == 0) abort(); /* a public-only name refused */
    free(error);
}

static void check_addr(const unsigned char *b)
{
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    memcpy(&s6.sin6_addr, b, 16);
    bool r6 = net_addr_refused((struct sockaddr *)&s6);
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    memcpy(&s4.sin_addr, b + 12, 4);
    bool r4 = net_addr_refused((struct sockaddr *)&s4);
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B};
    if ((memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) && r6 != r4) abort();
    static const unsigned char lo[16] = {[15] = 1};
    if (memcmp(b, lo, 16) == 0 && !r6) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static int ready;
    if (!ready) ready = net_start(ALLOW) == 0;
    if (size < 1) return 0;
    if (data[0] == 0xA5) {
        unsigned char b[16] = {0};
        memcpy(b, data + 1, size - 1 < 16 ? size - 1 : 16);
        check_addr(b);
        return 0;
    }
    char *url = malloc(size);
    memcpy(url, data + 1, size - 1);
    url[size - 1] = '\0';
    check_url(url, strlen(url));
    free(url);
    return 0;
}
