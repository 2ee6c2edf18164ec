/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Socket addresses as the config and the logs write them ("ip:port", "[ip6]:port"),
 * and the decimal numbers ports are written in.
 */
#ifndef TUNNELGATE_ADDR_H
#define TUNNELGATE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

struct sockaddr_any {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_storage ss;
	};
	socklen_t len;
};

/*
 * Parse "host:port" / "[v6]:port" into @out, resolving host names with getaddrinfo.
 * Returns 0 or -EINVAL / -ENOENT.
 */
int parse_hostport(const char *s, struct sockaddr_any *out);

/* Format @a as "ip:port" or "[ip6]:port" into @buf; returns @buf. */
char *sockaddr_fmt(const struct sockaddr_any *a, char *buf, size_t len);

/* @a's port, host order. */
unsigned sockaddr_port(const struct sockaddr_any *a);

/*
 * @a's IP as 16 bytes into @out, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d) so that both
 * spellings of a host compare equal. Returns false, with @out zeroed, for other families.
 */
bool sockaddr_ip16(const struct sockaddr_any *a, uint8_t out[16]);

/*
 * A whole decimal number: digits only, no sign, no blanks, no hex. Returns 0, -EINVAL,
 * or -ERANGE past unsigned long long. Config values use the same syntax as ports.
 */
int parse_ull(const char *s, unsigned long long *out);

/* A port, 1..65535, in parse_ull() syntax. Returns 0 or -EINVAL. */
int parse_port(const char *s, unsigned *port);

/*
 * @host as an address with @port, if it is an IP literal: IPv4 in any inet_aton()
 * spelling, or IPv6 (without brackets). False, with @out zeroed, for a name.
 */
bool addr_from_literal(const char *host, unsigned port, struct sockaddr_any *out);

#endif
