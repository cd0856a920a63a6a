/*
 * net/addr.h — "host:port" addresses, read in one place for the sync node, tallyd and the
 * tally command.
 *
 * 1. The port is the text after the last colon: decimal digits only, 0 to 65535. The host is
 *    what comes before it and is not empty: a name, an IPv4 literal, or an IPv6 literal in
 *    brackets. A host with a colon outside brackets (a bare IPv6 literal) is refused: where its
 *    port begins would be a guess.
 * 2. The host is kept without its brackets; the whole text is at most NET_ADDR_MAX - 1 bytes.
 * 3. Nothing here looks a name up: net_addr_literal and net_addr_listen answer for literals,
 *    and the caller resolves a name (getaddrinfo) where names are allowed.
 */
#ifndef TALLY_NET_ADDR_H
#define TALLY_NET_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define NET_ADDR_MAX 96

typedef struct net_addr {
    char host[NET_ADDR_MAX];
    uint16_t port;
    bool bracketed; /* an IPv6 literal */
} net_addr;

/* TALLY_OK, or TALLY_EINVAL for text that is not "host:port" (rule 1). */
int net_addr_parse(const char *text, net_addr *out);
/* The socket address of a literal host; TALLY_EINVAL for anything else. */
int net_addr_literal(const net_addr *a, struct sockaddr_storage *out);
/* What a server listens on: "host:port" with a literal host, or "localhost" for 127.0.0.1. */
int net_addr_listen(const char *text, struct sockaddr_storage *out);
/* Whether a's host can be a DNS name (RFC 1123), and does not merely look like a broken IPv4
 * literal. */
bool net_addr_is_name(const net_addr *a);

#endif
