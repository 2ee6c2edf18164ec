// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Server selection: smooth weighted round robin, leastconn, source and target hashing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pool.h"

#define MAX_SERVERS 8

/* A pool of servers named "a", "b", ... with the given weights (0 ends the list). */
struct pool_fx {
	struct pool pool;
	struct server servers[MAX_SERVERS];
	struct server_state states[MAX_SERVERS];
};

static struct pool *make_pool(struct pool_fx *fx, enum balance bal, const unsigned *weights)
{
	memset(fx, 0, sizeof(*fx));
	strcpy(fx->pool.name, "p");
	fx->pool.balance = bal;
	fx->pool.rise = 2;
	fx->pool.fall = 3;
	fx->pool.servers = fx->servers;
	for (unsigned i = 0; i < MAX_SERVERS && weights[i]; i++) {
		fx->servers[i].name[0] = 'a' + i;
		fx->servers[i].weight = weights[i];
		fx->servers[i].state = &fx->states[i];
		fx->pool.nservers++;
	}
	return &fx->pool;
}

static char pick_name(struct pool *p, const struct sockaddr_any *client, const char *target,
		      const struct server *exclude)
{
	struct server *s = pool_pick(p, client, target, exclude);

	assert_non_null(s);
	return s->name[0];
}

/* Sequences of round robin picks from a fresh pool: exact, and smooth. */
static void test_roundrobin_sequences(void **state)
{
	static const struct {
		unsigned weights[MAX_SERVERS];
		const char *seq;
	} cases[] = {
		{ { 1 }, "aaaa" },
		{ { 1, 1 }, "abababab" },
		{ { 1, 1, 1 }, "abcabcabc" },
		{ { 1, 2 }, "babbabbab" },
		{ { 2, 1 }, "abaaba" },
		{ { 5, 1, 1 }, "aabacaa" "aabacaa" },     /* nginx's example: no a a a a a */
		{ { 3, 2, 1 }, "abacba" "abacba" },
		{ { 1000, 1 }, "aaaaaaaaaa" },
	};
	struct pool_fx fx;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pool *p = make_pool(&fx, BAL_ROUNDROBIN, cases[i].weights);
		char got[32] = "";

		for (size_t j = 0; j < strlen(cases[i].seq); j++) {
			got[j] = pick_name(p, NULL, "h:443", NULL);
			pool_release(p, &fx.servers[got[j] - 'a']);
		}
		if (strcmp(got, cases[i].seq))
			fail_msg("case %zu: got %s, want %s", i, got, cases[i].seq);
	}
}

static void test_roundrobin_1_2(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_ROUNDROBIN, (const unsigned[]){ 1, 2, 0 });
	unsigned count[2] = { 0 }, run = 0, max_run_b = 0;
	char prev = 0;

	(void)state;
	for (int i = 0; i < 30; i++) {
		char c = pick_name(p, NULL, NULL, NULL);

		/* the exact sequence: b a b, b a b, ... */
		assert_int_equal(c, "bab"[i % 3]);
		count[c - 'a']++;
		run = c == prev ? run + 1 : 1;
		prev = c;
		if (c == 'b' && run > max_run_b)
			max_run_b = run;
		assert_false(c == 'a' && run > 1); /* smooth: a never twice in a row */
	}
	assert_int_equal(count[0], 10);
	assert_int_equal(count[1], 20);
	assert_true(max_run_b <= 2);
	assert_int_equal(fx.states[0].picks, 10);
	assert_int_equal(fx.states[1].picks, 20);
	assert_int_equal(fx.states[0].active, 10); /* nothing released */
	for (int i = 0; i < 10; i++)
		pool_release(p, &fx.servers[0]);
	assert_int_equal(fx.states[0].active, 0);
	pool_release(p, &fx.servers[0]); /* never below zero */
	assert_int_equal(fx.states[0].active, 0);
	pool_release(p, NULL);
}

static void test_exclude(void **state)
{
	static const enum balance modes[] = { BAL_ROUNDROBIN, BAL_LEASTCONN, BAL_SOURCE, BAL_TARGET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_any client;
	struct pool_fx fx;
	char target[32];

	(void)state;
	memset(&client, 0, sizeof(client));
	memcpy(&client.in6, &sin6, sizeof(sin6));
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct pool *p = make_pool(&fx, modes[m], (const unsigned[]){ 1, 3, 1, 0 });

		for (int i = 0; i < 50; i++) {
			client.in6.sin6_addr.s6_addr[15] = i;
			snprintf(target, sizeof(target), "host%d:443", i);
			assert_int_not_equal(pick_name(p, &client, target, &fx.servers[1]), 'b');
		}
		/* one server left: it is the only pick; excluded too: ENOENT */
		p->nservers = 1;
		assert_int_equal(pick_name(p, &client, "h:1", &fx.servers[1]), 'a');
		errno = 0;
		assert_null(pool_pick(p, &client, "h:1", &fx.servers[0]));
		assert_int_equal(errno, ENOENT);
	}
}

static void test_empty_and_direct(void **state)
{
	static const enum balance modes[] = { BAL_ROUNDROBIN, BAL_LEASTCONN, BAL_SOURCE, BAL_TARGET };
	struct pool_fx fx;

	(void)state;
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct pool *p = make_pool(&fx, modes[m], (const unsigned[]){ 0 });

		errno = 0;
		assert_null(pool_pick(p, NULL, NULL, NULL));
		assert_int_equal(errno, ENOENT);
	}
	make_pool(&fx, BAL_ROUNDROBIN, (const unsigned[]){ 0 })->direct = true;
	errno = 0;
	assert_null(pool_pick(&fx.pool, NULL, "h:443", NULL));
	assert_int_equal(errno, ENOENT);
}

static void test_leastconn(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_LEASTCONN, (const unsigned[]){ 1, 1, 1, 0 });
	char seq[16] = "";

	(void)state;
	/* idle pool: ties rotate instead of always taking the first */
	for (int i = 0; i < 6; i++) {
		seq[i] = pick_name(p, NULL, NULL, NULL);
		pool_release(p, &fx.servers[seq[i] - 'a']);
	}
	assert_string_equal(seq, "abcabc");

	/* long connections: the least loaded wins */
	make_pool(&fx, BAL_LEASTCONN, (const unsigned[]){ 1, 1, 1, 0 });
	fx.states[0].active = 5;
	fx.states[1].active = 2;
	fx.states[2].active = 3;
	assert_int_equal(pick_name(p, NULL, NULL, NULL), 'b'); /* 5 3 3 */
	assert_int_equal(pick_name(p, NULL, NULL, NULL), 'c'); /* 5 3 4: tie, c fewer picks */
	assert_int_equal(pick_name(p, NULL, NULL, NULL), 'b'); /* 5 4 4 */
	pool_release(p, &fx.servers[0]);
	pool_release(p, &fx.servers[0]);
	pool_release(p, &fx.servers[0]);
	assert_int_equal(pick_name(p, NULL, NULL, NULL), 'a'); /* 2 4 4 */

	/* weights: active/weight, so a weight 3 server holds 3x the connections */
	make_pool(&fx, BAL_LEASTCONN, (const unsigned[]){ 1, 3, 0 });
	for (int i = 0; i < 40; i++)
		pick_name(p, NULL, NULL, NULL);
	assert_int_equal(fx.states[0].active, 10);
	assert_int_equal(fx.states[1].active, 30);
}

static struct sockaddr_any v4(const char *ip, unsigned port)
{
	struct sockaddr_any a;

	memset(&a, 0, sizeof(a));
	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.in.sin_addr);
	a.len = sizeof(a.in);
	return a;
}

static void test_source(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_SOURCE, (const unsigned[]){ 1, 1, 1, 1, 0 });
	struct sockaddr_any a = v4("192.0.2.1", 1000), mapped;
	unsigned seen[MAX_SERVERS] = { 0 };
	char first = pick_name(p, &a, "x:1", NULL), ip[32];

	(void)state;
	/* sticky: other ports, other targets, many picks */
	for (unsigned i = 0; i < 20; i++) {
		a.in.sin_port = htons(1000 + i);
		assert_int_equal(pick_name(p, &a, i % 2 ? "x:1" : "y:2", NULL), first);
	}
	/* the IPv4-mapped spelling of the same client agrees */
	memset(&mapped, 0, sizeof(mapped));
	mapped.in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &mapped.in6.sin6_addr);
	assert_int_equal(pick_name(p, &mapped, "x:1", NULL), first);
	/* different clients spread over all servers */
	for (unsigned i = 0; i < 200; i++) {
		snprintf(ip, sizeof(ip), "10.0.%u.%u", i / 250, i % 250);
		a = v4(ip, 5);
		seen[pick_name(p, &a, NULL, NULL) - 'a']++;
	}
	for (unsigned i = 0; i < 4; i++)
		assert_true(seen[i] > 20);
}

static void test_target(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_TARGET, (const unsigned[]){ 1, 1, 1, 0 });
	struct sockaddr_any a = v4("192.0.2.1", 1000);
	unsigned seen[MAX_SERVERS] = { 0 };
	char first = pick_name(p, &a, "example.com:443", NULL), t[32];

	(void)state;
	/* sticky whatever the client */
	for (unsigned i = 0; i < 20; i++) {
		snprintf(t, sizeof(t), "192.0.2.%u", i);
		a = v4(t, 1000 + i);
		assert_int_equal(pick_name(p, &a, "example.com:443", NULL), first);
	}
	for (unsigned i = 0; i < 300; i++) {
		snprintf(t, sizeof(t), "host%u.example:443", i);
		seen[pick_name(p, &a, t, NULL) - 'a']++;
	}
	for (unsigned i = 0; i < 3; i++)
		assert_true(seen[i] > 50);
	/* no target still picks */
	pick_name(p, &a, NULL, NULL);

	/* weights share the hash space: 1:3 gives about a quarter to a */
	make_pool(&fx, BAL_TARGET, (const unsigned[]){ 1, 3, 0 });
	memset(seen, 0, sizeof(seen));
	for (unsigned i = 0; i < 400; i++) {
		snprintf(t, sizeof(t), "h%u:443", i);
		seen[pick_name(p, &a, t, NULL) - 'a']++;
	}
	assert_true(seen[0] > 60 && seen[0] < 140);
}

/* fall failures in a row take a server down, rise checks bring it up; answers reset. */
static void test_health_fall_rise(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_ROUNDROBIN, (const unsigned[]){ 1, 1, 0 });
	struct server *a = &fx.servers[0];

	(void)state;
	pool_server_failed(p, a, "refused");
	pool_server_failed(p, a, "refused");
	pool_server_ok(p, a, NULL); /* a client got an answer: the run of failures ends */
	pool_server_failed(p, a, "refused");
	pool_server_failed(p, a, "refused");
	assert_false(fx.states[0].down);
	pool_server_failed(p, a, "timeout");
	assert_true(fx.states[0].down);
	assert_string_equal(fx.states[0].last, "timeout");
	assert_int_equal(fx.states[0].downs, 1);
	assert_string_equal(pool_server_state_name(&fx.states[0]), "down");
	/* Down: every pick goes to b. */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(pick_name(p, NULL, NULL, NULL), 'b');
		pool_release(p, &fx.servers[1]);
	}
	pool_server_ok(p, a, NULL); /* a late answer does not bring it back */
	pool_server_ok(p, a, "ok 1ms");
	assert_true(fx.states[0].down);
	pool_server_failed(p, a, "refused"); /* a failure restarts the count of checks */
	pool_server_ok(p, a, "ok 1ms");
	assert_true(fx.states[0].down);
	pool_server_ok(p, a, "ok 1ms");
	assert_false(fx.states[0].down);
	assert_string_equal(fx.states[0].last, "ok 1ms");
}

/* Down or drained servers are skipped by every balance; none left is ENOENT. */
static void test_unusable_skipped(void **state)
{
	static const enum balance modes[] = { BAL_ROUNDROBIN, BAL_LEASTCONN, BAL_SOURCE, BAL_TARGET };
	struct pool_fx fx;

	(void)state;
	for (size_t m = 0; m < 4; m++) {
		struct pool *p = make_pool(&fx, modes[m], (const unsigned[]){ 1, 1, 1, 0 });
		char buf[32];

		fx.states[0].down = true;
		fx.states[2].drained = true;
		for (int i = 0; i < 20; i++) {
			snprintf(buf, sizeof(buf), "h%d:443", i);
			assert_int_equal(pick_name(p, NULL, buf, NULL), 'b');
		}
		fx.states[1].down = true;
		errno = 0;
		assert_null(pool_pick(p, NULL, "h:443", NULL));
		assert_int_equal(errno, ENOENT);
		assert_string_equal(pool_server_state_name(&fx.states[2]), "drained");
		fx.states[2].down = true;
		assert_string_equal(pool_server_state_name(&fx.states[2]), "down,drained");
	}
}

/* A server at its maxconn is skipped; all usable ones full is EBUSY. */
static void test_maxconn(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_ROUNDROBIN, (const unsigned[]){ 1, 1, 0 });

	(void)state;
	fx.servers[0].maxconn = 1;
	fx.servers[1].maxconn = 2;
	assert_non_null(pool_pick(p, NULL, NULL, NULL));
	assert_non_null(pool_pick(p, NULL, NULL, NULL));
	assert_non_null(pool_pick(p, NULL, NULL, NULL));
	assert_int_equal(fx.states[0].active, 1);
	assert_int_equal(fx.states[1].active, 2);
	errno = 0;
	assert_null(pool_pick(p, NULL, NULL, NULL));
	assert_int_equal(errno, EBUSY);
	pool_release(p, &fx.servers[1]);
	assert_int_equal(pick_name(p, NULL, NULL, NULL), 'b');
	fx.states[1].down = true; /* full and down: nothing usable is ENOENT */
	fx.states[0].down = true;
	errno = 0;
	assert_null(pool_pick(p, NULL, NULL, NULL));
	assert_int_equal(errno, ENOENT);
}

/* Waiters leave in arrival order, one per released slot; a retry keeps its place. */
static void test_queue(void **state)
{
	struct pool_fx fx;
	struct pool *p = make_pool(&fx, BAL_ROUNDROBIN, (const unsigned[]){ 1, 0 });
	struct pool_waiter w[3] = { 0 };

	(void)state;
	p->state = pool_state_get("q");
	assert_non_null(p->state);
	fx.servers[0].maxconn = 1;
	assert_non_null(pool_pick(p, NULL, NULL, NULL));
	for (int i = 0; i < 3; i++)
		pool_queue_add(p, &w[i]);
	assert_int_equal(p->state->queued, 3);
	assert_null(pool_queue_next()); /* no slot freed yet */
	pool_queue_leave(&w[1]);          /* a client that went away */
	pool_queue_leave(&w[1]);          /* twice is harmless */
	assert_int_equal(p->state->queued, 2);
	pool_release(p, &fx.servers[0]);
	assert_ptr_equal(pool_queue_next(), &w[0]);
	assert_non_null(pool_pick(p, NULL, NULL, NULL)); /* w[0] takes the slot */
	/* The next one finds no room and goes back to the head. */
	assert_ptr_equal(pool_queue_next(), &w[2]);
	pool_queue_retry(p, &w[2]);
	assert_null(pool_queue_next());
	assert_int_equal(p->state->queued, 1);
	pool_queue_kick();
	assert_ptr_equal(pool_queue_next(), &w[2]);
	assert_int_equal(p->state->queued, 0);
	assert_null(pool_queue_next());
	assert_int_equal(p->state->waits, 3);
	pool_state_put(p->state);
}

/* drain: ip:port in every pool, POOL/ip:port in one; the state survives a re-get. */
static void test_drain(void **state)
{
	struct sockaddr_any a;
	struct server_state *s1, *s2, *again;

	(void)state;
	assert_int_equal(parse_hostport("127.0.0.1:8888", &a), 0);
	s1 = server_state_get("one", &a);
	s2 = server_state_get("two", &a);
	assert_int_equal(pool_drain("127.0.0.1:8888", true), 2);
	assert_true(s1->drained && s2->drained);
	assert_int_equal(pool_drain("two/127.0.0.1:8888", false), 1);
	assert_true(s1->drained);
	assert_false(s2->drained);
	assert_int_equal(pool_drain("127.0.0.1:9999", true), 0);
	assert_int_equal(pool_drain("tw/127.0.0.1:8888", true), 0);
	again = server_state_get("one", &a); /* a reload's config: same state */
	assert_ptr_equal(again, s1);
	assert_true(again->drained);
	server_state_put(again);
	server_state_put(s1);
	server_state_put(s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundrobin_sequences),
		cmocka_unit_test(test_roundrobin_1_2),
		cmocka_unit_test(test_exclude),
		cmocka_unit_test(test_empty_and_direct),
		cmocka_unit_test(test_leastconn),
		cmocka_unit_test(test_source),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_health_fall_rise),
		cmocka_unit_test(test_unusable_skipped),
		cmocka_unit_test(test_maxconn),
		cmocka_unit_test(test_queue),
		cmocka_unit_test(test_drain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
