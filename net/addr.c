/*
 * net/addr.c — see addr.h.
 */
#include "net/addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>

#include "tally.h"

int net_addr_parse(const char *text, net_addr *out) {
    memset(out, 0, sizeof *out);
    if (text == NULL || strlen(text) >= NET_ADDR_MAX) {
        return TALLY_EINVAL;
    }
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) {
        return TALLY_EINVAL;
    }
    const char *digits = colon + 1;
    size_t n_digits = strlen(digits);
    if (n_digits == 0 || n_digits > 5 || strspn(digits, "0123456789") != n_digits) {
        return TALLY_EINVAL;
    }
    uint32_t port = 0;
    for (size_t i = 0; i < n_digits; i++) {
        port = port * 10 + (uint32_t)(digits[i] - '0');
    }
    if (port > 65535) {
        return TALLY_EINVAL;
    }
    const char *host = text;
    size_t host_len = (size_t)(colon - text);
    if (host[0] == '[') {
        if (host_len < 3 || host[host_len - 1] != ']') {
            return TALLY_EINVAL;
        }
        host++;
        host_len -= 2;
        out->bracketed = true;
    }
    if (memchr(host, ':', host_len) != NULL && !out->bracketed) {
        return TALLY_EINVAL; /* rule 1: a bare IPv6 literal */
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (uint16_t)port;
    return TALLY_OK;
}

int net_addr_literal(const net_addr *a, struct sockaddr_storage *out) {
    memset(out, 0, sizeof *out);
    if (a->bracketed) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(a->port);
        return inet_pton(AF_INET6, a->host, &in6->sin6_addr) == 1 ? TALLY_OK : TALLY_EINVAL;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    in->sin_family = AF_INET;
    in->sin_port = htons(a->port);
    return inet_pton(AF_INET, a->host, &in->sin_addr) == 1 ? TALLY_OK : TALLY_EINVAL;
}

int net_addr_listen(const char *text, struct sockaddr_storage *out) {
    net_addr a;
    int rc = net_addr_parse(text, &a);
    if (rc == TALLY_OK && !a.bracketed && strcmp(a.host, "localhost") == 0) {
        strcpy(a.host, "127.0.0.1");
    }
    return rc == TALLY_OK ? net_addr_literal(&a, out) : rc;
}

/* RFC 1123: labels of letters, digits and hyphens, at most 63 characters each and 253 in all,
 * neither starting nor ending with a hyphen. */
bool net_addr_is_name(const net_addr *a) {
    const char *host = a->host;
    size_t n = strlen(host), label = 0;
    if (a->bracketed || n == 0 || n > 253 || strspn(host, "0123456789.") == n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = host[i];
        if (ch == '.') {
            if (label == 0 || host[i - 1] == '-') {
                return false;
            }
            label = 0;
        } else if (isalnum((unsigned char)ch) || (ch == '-' && label > 0)) {
            if (++label > 63) {
                return false;
            }
        } else {
            return false;
        }
    }
    return host[n - 1] != '-';
}
