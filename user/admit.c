// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Connections per client address. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"

#define BUCKETS 4096 /* a power of two */

struct client {
	uint8_t ip[16];
	unsigned n;
	struct client *next;
};

/* One table for every worker: a lock per accept and per close, never per byte. */
struct admit {
	pthread_mutex_t lock;
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
	struct admit *a = calloc(1, sizeof(struct admit));

	if (a)
		pthread_mutex_init(&a->lock, NULL);
	return a;
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
	pthread_mutex_destroy(&a->lock);
	free(a);
}

unsigned admit_count(struct admit *a, const struct sockaddr_any *client)
{
	uint8_t ip[16];
	struct client *c;
	unsigned n;

	sockaddr_ip16(client, ip);
	pthread_mutex_lock(&a->lock);
	c = *link_of(a, ip);
	n = c ? c->n : 0;
	pthread_mutex_unlock(&a->lock);
	return n;
}

int admit_add(struct admit *a, const struct sockaddr_any *client)
{
	uint8_t ip[16];
	struct client **p, *c;

	int err = 0;

	sockaddr_ip16(client, ip);
	pthread_mutex_lock(&a->lock);
	p = link_of(a, ip);
	if (!*p && (c = calloc(1, sizeof(*c)))) {
		memcpy(c->ip, ip, 16);
		*p = c;
	}
	if (*p)
		(*p)->n++;
	else
		err = -ENOMEM;
	pthread_mutex_unlock(&a->lock);
	return err;
}

void admit_del(struct admit *a, const struct sockaddr_any *client)
{
	uint8_t ip[16];
	struct client **p, *c;

	sockaddr_ip16(client, ip);
	pthread_mutex_lock(&a->lock);
	p = link_of(a, ip);
	c = *p;
	if (c && !--c->n)
		*p = c->next;
	else
		c = NULL;
	pthread_mutex_unlock(&a->lock);
	free(c);
}
