/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unit test fixtures: socket addresses from literals. */
#ifndef TUNNELGATE_TESTS_ADDR_FX_H
#define TUNNELGATE_TESTS_ADDR_FX_H

#include <arpa/inet.h>
#include <netinet/in.h>

#include "addr.h"

static inline struct sockaddr_any v4(const char *ip, unsigned port)
{
	struct sockaddr_any a = { .len = sizeof(a.in) };

	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.in.sin_addr);
	return a;
}

static inline struct sockaddr_any v6(const char *ip, unsigned port)
{
	struct sockaddr_any a = { .len = sizeof(a.in6) };

	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a.in6.sin6_addr);
	return a;
}

#endif
