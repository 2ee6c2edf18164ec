// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Connections per client address. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"

#define BUCKETS 4096 /* a power of two */

struct client {
	uint8_t ip[16];
	unsigned n;
	struct client *next;
};

struct admit {
	struct client *b[BUCKETS];
};

static unsigned bucket(const uint8_t ip[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ ip[i]) * 16777619u;
	return h & (BUCKETS - 1);
}

/* The link that points at @ip's entry, or at the NULL that ends its bucket. */
static struct client **link_of(struct admit *a, const uint8_t ip[16])
{
	struct client **p;

	for (p = &a->b[bucket(ip)]; *p; p = &(*p)->next)
		if (!memcmp((*p)->ip, ip, 16))
			break;
	return p;
}

struct admit *admit_new(void)
{
	return calloc(1, sizeof(struct admit));
}

void admit_free(struct admit *a)
{
	if (!a)
		return;
	for (int i = 0; i < BUCKETS; i++)
		while (a->b[i]) {
			struct client *c = a->b[i];

			a->b[i] = c->next;
			free(c);
		}
	free(a);
}

unsigned admit_count(struct admit *a, const struct sockaddr_any *client)
{
	uint8_t ip[16];
	struct client *c;

	sockaddr_ip16(client, ip);
	c = *link_of(a, ip);
	return c ? c->n : 0;
}

int admit_add(struct admit *a, const struct sockaddr_any *client)
{
	uint8_t ip[16];
	struct client **p, *c;

	sockaddr_ip16(client, ip);
	p = link_of(a, ip);
	if (!*p) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		memcpy(c->ip, ip, 16);
		*p = c;
	}
	(*p)->n++;
	return 0;
}

void admit_del(struct admit *a, const struct sockaddr_any *client)
{
	uint8_t ip[16];
	struct client **p, *c;

	sockaddr_ip16(client, ip);
	p = link_of(a, ip);
	c = *p;
	if (!c || --c->n)
		return;
	*p = c->next;
	free(c);
}
