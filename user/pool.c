// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Upstream selection within a pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

static struct server_state *states; /* every server_state alive */

struct server_state *server_state_get(const char *pool, const struct sockaddr_any *addr)
{
	struct server_state *st;

	for (st = states; st; st = st->next)
		if (!strcmp(st->pool, pool) && st->addr.len == addr->len &&
		    !memcmp(&st->addr.ss, &addr->ss, addr->len)) {
			st->refs++;
			return st;
		}
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	snprintf(st->pool, sizeof(st->pool), "%s", pool);
	st->addr = *addr;
	st->refs = 1;
	st->next = states;
	states = st;
	return st;
}

void server_state_put(struct server_state *st)
{
	struct server_state **pp;

	if (!st || --st->refs)
		return;
	for (pp = &states; *pp; pp = &(*pp)->next)
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	free(st);
}

/* Config guarantees 1..1000; a hand-built pool with 0 must not divide by zero. */
static unsigned weight(const struct server *s)
{
	return s->weight ? s->weight : 1;
}

/*
 * nginx's smooth weighted round robin: weights 5:1:1 give a b a c a b a... rather
 * than a a a a a b c, so no server gets a burst.
 */
static struct server *pick_roundrobin(struct pool *p, const struct server *exclude)
{
	struct server *best = NULL;
	int total = 0;

	for (unsigned i = 0; i < p->nservers; i++) {
		struct server *s = &p->servers[i];

		if (s == exclude)
			continue;
		s->state->cur_weight += weight(s);
		total += weight(s);
		if (!best || s->state->cur_weight > best->state->cur_weight)
			best = s;
	}
	if (best)
		best->state->cur_weight -= total;
	return best;
}

/*
 * Lowest active/weight. Ties (an idle pool) go to the lowest picks/weight, which
 * rotates through the servers in weight proportion instead of always the first.
 */
static struct server *pick_leastconn(struct pool *p, const struct server *exclude)
{
	struct server *best = NULL;

	for (unsigned i = 0; i < p->nservers; i++) {
		struct server *s = &p->servers[i];
		uint64_t load, best_load;

		if (s == exclude)
			continue;
		if (!best) {
			best = s;
			continue;
		}
		/* a/wa < b/wb without division */
		load = (uint64_t)s->state->active * weight(best);
		best_load = (uint64_t)best->state->active * weight(s);
		if (load < best_load ||
		    (load == best_load && s->state->picks * weight(best) < best->state->picks * weight(s)))
			best = s;
	}
	return best;
}

/* FNV-1a with a final mix, so that close keys (10.0.0.1, 10.0.0.2) spread out. */
static uint64_t hash_bytes(const void *data, size_t len)
{
	const unsigned char *b = data;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* The client's IP without the port; IPv4 as IPv4-mapped, so both spellings agree. */
static uint64_t hash_client(const struct sockaddr_any *a)
{
	uint8_t ip[16];

	if (!a)
		return 0;
	sockaddr_ip16(a, ip);
	return hash_bytes(ip, sizeof(ip));
}

/* Map @h onto the candidates in proportion to their weights (haproxy's map-based hash). */
static struct server *pick_hash(struct pool *p, uint64_t h, const struct server *exclude)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < p->nservers; i++)
		if (&p->servers[i] != exclude)
			total += weight(&p->servers[i]);
	if (!total)
		return NULL;
	h %= total;
	for (unsigned i = 0; i < p->nservers; i++) {
		struct server *s = &p->servers[i];

		if (s == exclude)
			continue;
		if (h < weight(s))
			return s;
		h -= weight(s);
	}
	return NULL;
}

struct server *pool_pick(struct pool *p, const struct sockaddr_any *client, const char *target,
			 const struct server *exclude)
{
	struct server *s = NULL;

	if (!p->direct) {
		switch (p->balance) {
		case BAL_ROUNDROBIN:
			s = pick_roundrobin(p, exclude);
			break;
		case BAL_LEASTCONN:
			s = pick_leastconn(p, exclude);
			break;
		case BAL_SOURCE:
			s = pick_hash(p, hash_client(client), exclude);
			break;
		case BAL_TARGET:
			s = pick_hash(p, target ? hash_bytes(target, strlen(target)) : 0, exclude);
			break;
		}
	}
	if (!s) {
		errno = ENOENT;
		return NULL;
	}
	s->state->active++;
	s->state->picks++;
	return s;
}

void pool_release(struct server *s)
{
	if (s && s->state->active)
		s->state->active--;
}
