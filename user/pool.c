// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Upstream selection within a pool. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev.h"
#include "log.h"
#include "pool.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, n) __atomic_add_fetch(&(x), (n), __ATOMIC_RELAXED)

/*
 * The lists of states, and the health bookkeeping, under one lock: taken when a config
 * is loaded or freed, and when a server fails or passes a check, never per request
 * otherwise. Counts are atomics; each worker's queues are its own; roundrobin's
 * weights take a lock of their own for the few instructions of a pick.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rr_lock = PTHREAD_MUTEX_INITIALIZER; /* roundrobin's cur_weight */
static struct server_state *states; /* every server_state alive */
static struct pool_state *pstates;  /* every pool_state alive */
static bool any_slot_freed[CFG_MAX_WORKERS]; /* some queue of that worker has slot_freed */
static __thread unsigned worker;

void pool_set_worker(unsigned id)
{
	worker = id < CFG_MAX_WORKERS ? id : 0;
}

struct server_state *server_state_get(const char *pool, const struct sockaddr_any *addr)
{
	struct server_state *st;

	pthread_mutex_lock(&lock);
	for (st = states; st; st = st->next)
		if (!strcmp(st->pool, pool) && st->addr.len == addr->len &&
		    !memcmp(&st->addr.ss, &addr->ss, addr->len))
			break;
	if (st) {
		st->refs++;
	} else if ((st = calloc(1, sizeof(*st)))) {
		snprintf(st->pool, sizeof(st->pool), "%s", pool);
		st->addr = *addr;
		st->refs = 1;
		st->next = states;
		states = st;
	}
	pthread_mutex_unlock(&lock);
	return st;
}

void server_state_put(struct server_state *st)
{
	struct server_state **pp;

	if (!st)
		return;
	pthread_mutex_lock(&lock);
	if (--st->refs) {
		pthread_mutex_unlock(&lock);
		return;
	}
	for (pp = &states; *pp; pp = &(*pp)->next)
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	pthread_mutex_unlock(&lock);
	free(st);
}

struct pool_state *pool_state_get(const char *name)
{
	struct pool_state *ps;

	pthread_mutex_lock(&lock);
	for (ps = pstates; ps; ps = ps->next)
		if (!strcmp(ps->name, name))
			break;
	if (ps) {
		ps->refs++;
	} else if ((ps = calloc(1, sizeof(*ps)))) {
		snprintf(ps->name, sizeof(ps->name), "%s", name);
		ps->refs = 1;
		ps->next = pstates;
		pstates = ps;
	}
	pthread_mutex_unlock(&lock);
	return ps;
}

/* Its waiters hold a config, and so a reference: the last one goes with empty queues. */
void pool_state_put(struct pool_state *ps)
{
	struct pool_state **pp;

	if (!ps)
		return;
	pthread_mutex_lock(&lock);
	if (--ps->refs) {
		pthread_mutex_unlock(&lock);
		return;
	}
	for (pp = &pstates; *pp; pp = &(*pp)->next)
		if (*pp == ps) {
			*pp = ps->next;
			break;
		}
	pthread_mutex_unlock(&lock);
	free(ps);
}

bool pool_server_usable(const struct server *s)
{
	return !LOAD(s->state->down) && !LOAD(s->state->drained);
}

/* Every worker's waiters of @ps may try again: a server has room. */
static void slot_freed(struct pool_state *ps)
{
	if (!ps || !LOAD(ps->queued))
		return;
	for (unsigned w = 0; w < CFG_MAX_WORKERS; w++)
		if (LOAD(ps->q[w].head)) {
			STORE(ps->q[w].slot_freed, true);
			STORE(any_slot_freed[w], true);
		}
}

void pool_server_failed(const struct pool *p, struct server *s, const char *what)
{
	struct server_state *st = s->state;
	bool went_down = false;

	pthread_mutex_lock(&lock);
	snprintf(st->last, sizeof(st->last), "%s", what);
	st->last_ms = now_ms();
	st->oks = 0;
	if (!st->down && ++st->fails >= p->fall) {
		STORE(st->down, true);
		st->downs++;
		went_down = true;
	}
	pthread_mutex_unlock(&lock);
	if (went_down)
		pr_warn("pool %s server %s is down (%u failures in a row, the last: %s); no new connections go to it until %u checks succeed",
			p->name, s->name, p->fall, what, p->rise);
}

const char *pool_failure_name(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return "refused";
	case ETIMEDOUT:
		return "timeout";
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
		return "reset";
	default:
		return "unreachable";
	}
}

void pool_server_request_failed(const struct pool *p, struct server *s, const char *what)
{
	ADD(s->state->failures, 1);
	pool_server_failed(p, s, what);
}

void pool_server_ok(const struct pool *p, struct server *s, const char *what)
{
	struct server_state *st = s->state;
	bool went_up = false;

	pthread_mutex_lock(&lock);
	if (!what) {
		if (!st->down)
			st->fails = 0;
		pthread_mutex_unlock(&lock);
		return;
	}
	snprintf(st->last, sizeof(st->last), "%s", what);
	st->last_ms = now_ms();
	st->fails = 0;
	if (st->down && ++st->oks >= p->rise) {
		STORE(st->down, false);
		st->oks = 0;
		went_up = true;
	}
	pthread_mutex_unlock(&lock);
	if (!went_up)
		return;
	pr_info("pool %s server %s is up again (%u checks in a row succeeded)", p->name, s->name,
		p->rise);
	slot_freed(p->state);
}

unsigned pool_drain(const char *spec, bool drain)
{
	const char *slash = strchr(spec, '/');
	size_t plen = slash ? (size_t)(slash - spec) : 0;
	const char *addr = slash ? slash + 1 : spec;
	unsigned n = 0;
	char name[CFG_NAME_MAX];

	pthread_mutex_lock(&lock);
	for (struct server_state *st = states; st; st = st->next) {
		if (slash && (strlen(st->pool) != plen || strncmp(st->pool, spec, plen)))
			continue;
		sockaddr_fmt(&st->addr, name, sizeof(name));
		if (strcmp(name, addr))
			continue;
		if (st->drained != drain)
			pr_info("pool %s server %s %s by tunnelctl%s", st->pool, name,
				drain ? "drained" : "undrained",
				drain ? ": no new connections go to it, its open ones stay" : "");
		STORE(st->drained, drain);
		n++;
	}
	pthread_mutex_unlock(&lock);
	return n;
}

const char *pool_server_state_name(const struct server_state *st)
{
	if (LOAD(st->down))
		return LOAD(st->drained) ? "down,drained" : "down";
	return LOAD(st->drained) ? "drained" : "up";
}

/* Link @w into this worker's queue of @ps: at the tail, or at the head for a retry. */
static void queue_link(struct pool_state *ps, struct pool_waiter *w, bool at_head)
{
	struct pool_queue *q = &ps->q[worker];

	w->ps = ps;
	if (at_head) {
		w->prev = NULL;
		w->next = q->head;
		if (q->head)
			q->head->prev = w;
		else
			q->tail = w;
		STORE(q->head, w);
	} else {
		w->next = NULL;
		w->prev = q->tail;
		if (q->tail)
			q->tail->next = w;
		else
			STORE(q->head, w);
		q->tail = w;
	}
	ADD(ps->queued, 1);
}

void pool_queue_add(struct pool *p, struct pool_waiter *w)
{
	w->since_ms = now_ms();
	queue_link(p->state, w, false);
	ADD(p->state->waits, 1);
}

void pool_queue_leave(struct pool_waiter *w)
{
	struct pool_state *ps = w->ps;
	struct pool_queue *q;

	if (!ps)
		return;
	q = &ps->q[worker];
	if (w->prev)
		w->prev->next = w->next;
	else
		STORE(q->head, w->next);
	if (w->next)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	ADD(ps->queued, -1);
	w->ps = NULL;
	w->prev = w->next = NULL;
}

void pool_queue_timed_out(struct pool *p)
{
	ADD(p->state->timeouts, 1);
}

struct pool_waiter *pool_queue_next(void)
{
	struct pool_waiter *w = NULL;

	if (!LOAD(any_slot_freed[worker]))
		return NULL;
	pthread_mutex_lock(&lock); /* the list of pools; rare: only after a release with waiters */
	for (struct pool_state *ps = pstates; ps && !w; ps = ps->next) {
		struct pool_queue *q = &ps->q[worker];

		if (!LOAD(q->slot_freed))
			continue;
		if (!q->head)
			STORE(q->slot_freed, false);
		else
			w = q->head;
	}
	if (!w)
		STORE(any_slot_freed[worker], false);
	pthread_mutex_unlock(&lock);
	if (w)
		pool_queue_leave(w);
	return w;
}

void pool_queue_kick(void)
{
	pthread_mutex_lock(&lock);
	for (struct pool_state *ps = pstates; ps; ps = ps->next)
		if (ps->q[worker].head) {
			STORE(ps->q[worker].slot_freed, true);
			STORE(any_slot_freed[worker], true);
		}
	pthread_mutex_unlock(&lock);
}

void pool_queue_retry(struct pool *p, struct pool_waiter *w)
{
	queue_link(p->state, w, true); /* its since_ms stays */
	/* Every server is full again: wait for the next release. */
	STORE(p->state->q[worker].slot_freed, false);
}

/* Config guarantees 1..1000; a hand-built pool with 0 must not divide by zero. */
static unsigned weight(const struct server *s)
{
	return s->weight ? s->weight : 1;
}

/* May @s take this connection? */
static bool candidate(const struct server *s, const struct server *exclude)
{
	return s != exclude && pool_server_usable(s) &&
	       (!s->maxconn || LOAD(s->state->active) < s->maxconn);
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

		if (!candidate(s, exclude))
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

		if (!candidate(s, exclude))
			continue;
		if (!best) {
			best = s;
			continue;
		}
		/* a/wa < b/wb without division */
		load = (uint64_t)LOAD(s->state->active) * weight(best);
		best_load = (uint64_t)LOAD(best->state->active) * weight(s);
		if (load < best_load || (load == best_load && LOAD(s->state->picks) * weight(best) <
							       LOAD(best->state->picks) * weight(s)))
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
		if (candidate(&p->servers[i], exclude))
			total += weight(&p->servers[i]);
	if (!total)
		return NULL;
	h %= total;
	for (unsigned i = 0; i < p->nservers; i++) {
		struct server *s = &p->servers[i];

		if (!candidate(s, exclude))
			continue;
		if (h < weight(s))
			return s;
		h -= weight(s);
	}
	return NULL;
}

static struct server *pick_one(struct pool *p, const struct sockaddr_any *client,
				const char *target, const struct server *exclude)
{
	struct server *s;

	if (p->direct)
		return NULL;
	switch (p->balance) {
	case BAL_ROUNDROBIN:
		/* One turn for every worker: a short lock keeps the weights' order exact. */
		pthread_mutex_lock(&rr_lock);
		s = pick_roundrobin(p, exclude);
		pthread_mutex_unlock(&rr_lock);
		return s;
	case BAL_LEASTCONN:
		return pick_leastconn(p, exclude);
	case BAL_SOURCE:
		return pick_hash(p, hash_client(client), exclude);
	case BAL_TARGET:
		return pick_hash(p, target ? hash_bytes(target, strlen(target)) : 0, exclude);
	}
	return NULL;
}

/* One more connection through @s, unless another worker just took its last slot. */
static bool claim(struct server *s)
{
	unsigned a = LOAD(s->state->active);

	do {
		if (s->maxconn && a >= s->maxconn)
			return false;
	} while (!__atomic_compare_exchange_n(&s->state->active, &a, a + 1, false,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return true;
}

struct server *pool_pick(struct pool *p, const struct sockaddr_any *client, const char *target,
			 const struct server *exclude)
{
	/* A lost race for a last slot makes that server full: the next pick skips it. */
	for (unsigned tries = 0; tries <= p->nservers; tries++) {
		struct server *s = pick_one(p, client, target, exclude);

		if (!s)
			break;
		if (claim(s)) {
			ADD(s->state->picks, 1);
			return s;
		}
	}
	errno = ENOENT;
	for (unsigned i = 0; i < p->nservers; i++)
		if (&p->servers[i] != exclude && pool_server_usable(&p->servers[i]))
			errno = EBUSY; /* usable, but at maxconn */
	return NULL;
}

void pool_release(struct pool *p, struct server *s)
{
	unsigned a;

	if (!s)
		return;
	a = LOAD(s->state->active);
	do {
		if (!a)
			return;
	} while (!__atomic_compare_exchange_n(&s->state->active, &a, a - 1, false,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	slot_freed(p->state);
}
