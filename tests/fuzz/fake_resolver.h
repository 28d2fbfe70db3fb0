/*
 * fake_resolver.h — for fuzz targets only: getaddrinfo/freeaddrinfo
 * defined in the fuzz binary, so they win over libc's at link time
 * (nothing else in these binaries resolves names). An address literal
 * resolves as glibc does (inet_aton's 127.1 and 0x7f.1 forms, inet_pton
 * for IPv6); any other name to one or two addresses drawn by its hash from
 * a table of public and local ones, or to nothing (one in seven), so a
 * name that "rebinds" to a loopback among public addresses is in the mix.
 * fake_last_local says whether the last resolution of a name included a
 * local address (-1: not a table name). Include from one file per binary.
 */
#ifndef SS_FUZZ_FAKE_RESOLVER_H
#define SS_FUZZ_FAKE_RESOLVER_H

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const struct {
    const char *addr;
    int local;
} table[] = {
    {"93.184.216.34", 0},
    {"8.8.8.8", 0},
    {"2606:2800:220:1::1", 0},
    {"127.0.0.1", 1},
    {"10.0.0.7", 1},
    {"169.254.169.254", 1},
    {"::1", 1},
    {"::ffff:127.0.0.1", 1},
    {"fd00::1", 1},
    {"fe80::1", 1},
    {"0.0.0.0", 1},
    {"192.168.1.1", 1},
    {"10.9.3.4", 0 /* allow-listed CIDR */},
};
#define N_TABLE (sizeof table / sizeof table[0])

static int fake_last_local; /* whether the last fake resolution had a local address */

static struct addrinfo *ai_new(int family, const void *addr)
{
    struct addrinfo *ai = calloc(1, sizeof *ai);
    if (family == AF_INET) {
        struct sockaddr_in *sa = calloc(1, sizeof *sa);
        sa->sin_family = AF_INET;
        memcpy(&sa->sin_addr, addr, 4);
        ai->ai_addr = (struct sockaddr *)sa;
        ai->ai_addrlen = sizeof *sa;
    } else {
        struct sockaddr_in6 *sa = calloc(1, sizeof *sa);
        sa->sin6_family = AF_INET6;
        memcpy(&sa->sin6_addr, addr, 16);
        ai->ai_addr = (struct sockaddr *)sa;
        ai->ai_addrlen = sizeof *sa;
    }
    ai->ai_family = family;
    ai->ai_socktype = SOCK_STREAM;
    return ai;
}

static struct addrinfo *ai_text(const char *text)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, text, a) == 1) return ai_new(AF_INET, a);
    inet_pton(AF_INET6, text, a);
    return ai_new(AF_INET6, a);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    (void)service;
    (void)hints;
    fake_last_local = -1;
    if (!node || !*node) return EAI_NONAME;
    struct in_addr v4;
    unsigned char v6[16];
    if (inet_aton(node, &v4)) {
        *res = ai_new(AF_INET, &v4);
        return 0;
    }
    if (inet_pton(AF_INET6, node, v6) == 1) {
        *res = ai_new(AF_INET6, v6);
        return 0;
    }
    uint32_t h = 2166136261u;
    for (const char *c = node; *c; c++)
        h = (h ^ (unsigned char)(*c | 0x20)) * 16777619u;
    if (h % 7 == 0) return EAI_NONAME;
    size_t i = h % N_TABLE, j = (h / N_TABLE) % N_TABLE;
    *res = ai_text(table[i].addr);
    fake_last_local = table[i].local;
    if ((h >> 24) & 1) { /* two addresses */
        (*res)->ai_next = ai_text(table[j].addr);
        fake_last_local |= table[j].local;
    }
    return 0;
}

void freeaddrinfo(struct addrinfo *ai)
{
    while (ai) {
        struct addrinfo *next = ai->ai_next;
        free(ai->ai_addr);
        free(ai);
        ai = next;
    }
}

#endif
