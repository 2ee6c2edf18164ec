// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Address helpers: parsing "host:port" for the config, formatting addresses for logs
 * and the CLI, and the 16-byte form that rules and balancers compare.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

int parse_ull(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (~0ULL - 9) / 10)
			return -ERANGE;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return 0;
}

int parse_port(const char *s, unsigned *port)
{
	unsigned long long n;

	if (parse_ull(s, &n) || n < 1 || n > 65535)
		return -EINVAL;
	*port = n;
	return 0;
}

int parse_hostport(const char *s, struct sockaddr_any *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	const char *host, *port;
	char buf[256];
	size_t hlen;
	unsigned p;
	int r;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		host = s + 1;
		hlen = close - host;
		port = close + 2;
		hints.ai_family = AF_INET6;
		hints.ai_flags |= AI_NUMERICHOST;
	} else {
		const char *colon = strrchr(s, ':');

		/* A second colon means an IPv6 address without brackets: ambiguous. */
		if (!colon || memchr(s, ':', colon - s))
			return -EINVAL;
		host = s;
		hlen = colon - s;
		port = colon + 1;
	}
	if (!hlen || hlen >= sizeof(buf) || parse_port(port, &p))
		return -EINVAL;
	memcpy(buf, host, hlen);
	buf[hlen] = '\0';

	r = getaddrinfo(buf, port, &hints, &res);
	if (r == EAI_NONAME || r == EAI_AGAIN || r == EAI_FAIL || r == EAI_NODATA)
		return hints.ai_flags & AI_NUMERICHOST ? -EINVAL : -ENOENT;
	if (r)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

bool sockaddr_ip16(const struct sockaddr_any *a, uint8_t out[16])
{
	memset(out, 0, 16);
	if (a->sa.sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a->in.sin_addr, 4);
		return true;
	}
	if (a->sa.sa_family == AF_INET6) {
		memcpy(out, &a->in6.sin6_addr, 16);
		return true;
	}
	return false;
}

unsigned sockaddr_port(const struct sockaddr_any *a)
{
	return ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port : a->in.sin_port);
}

char *sockaddr_fmt(const struct sockaddr_any *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (!len)
		return buf;
	if (a->sa.sa_family == AF_INET && inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip)))
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in.sin_port));
	else if (a->sa.sa_family == AF_INET6 && inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip)))
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	else
		snprintf(buf, len, "?");
	return buf;
}

bool addr_from_literal(const char *host, unsigned port, struct sockaddr_any *out)
{
	memset(out, 0, sizeof(*out));
	/* inet_aton(): every IPv4 spelling the rules canonicalise (127.1, 0x7f.1) too. */
	if (inet_aton(host, &out->in.sin_addr)) {
		out->in.sin_family = AF_INET;
		out->in.sin_port = htons(port);
		out->len = sizeof(out->in);
		return true;
	}
	if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
		out->in6.sin6_family = AF_INET6;
		out->in6.sin6_port = htons(port);
		out->len = sizeof(out->in6);
		return true;
	}
	return false;
}
