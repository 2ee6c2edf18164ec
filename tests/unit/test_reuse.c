// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The idle upstream connection store, on real socketpairs: keys, LIFO, private
 * connections, peers that closed or spoke, the bound, expiry, and which requests may
 * go on a parked connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr_fx.h"
#include "gateway-t.h"
#include "reuse.h"

/* The store under test, with the poller it registers with. */
struct fx {
	struct reuse *r;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || ev_open())
		return -1;
	f->r = reuse_new();
	*state = f;
	return f->r ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	reuse_free(f->r);
	ev_close();
	free(f);
	return 0;
}

/* A connected pair: [0] is parked, [1] plays the upstream. */
static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/*
 * True if the parked end of @far was closed: the far end reads EOF, or a reset when
 * the parked end had unread bytes.
 */
static bool closed_far(int far)
{
	char b;
	ssize_t n = recv(far, &b, 1, MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static int put(struct fx *f, int fd, const char *pool, struct sockaddr_any a, const void *owner)
{
	return reuse_put(f->r, fd, pool, &a, owner, 64, 10000);
}

static int take(struct fx *f, const char *pool, struct sockaddr_any a, const void *owner,
		bool *private)
{
	bool p;

	return reuse_take(f->r, pool, &a, owner, private ? private : &p);
}

static void test_keys_and_lifo(void **state)
{
	struct fx *f = *state;
	struct sockaddr_any a = v4("10.0.0.1", 80), b = v4("10.0.0.1", 81), c = v4("10.0.0.2", 80);
	struct sockaddr_any a6 = v6("2001:db8::1", 80);
	int s1[2], s2[2], s3[2];

	pair(s1);
	pair(s2);
	pair(s3);
	assert_int_equal(put(f, s1[0], "web", a, NULL), 0);
	assert_int_equal(put(f, s2[0], "web", a, NULL), 0);
	assert_int_equal(put(f, s3[0], "web", a6, NULL), 0);
	assert_int_equal(reuse_count(f->r), 3);
	/* Another port, address, family or pool is another key. */
	assert_int_equal(take(f, "web", b, NULL, NULL), -1);
	assert_int_equal(take(f, "web", c, NULL, NULL), -1);
	assert_int_equal(take(f, "web", v6("2001:db8::2", 80), NULL, NULL), -1);
	assert_int_equal(take(f, "other", a, NULL, NULL), -1);
	/* The newest first. */
	assert_int_equal(take(f, "web", a, NULL, NULL), s2[0]);
	assert_int_equal(take(f, "web", a, NULL, NULL), s1[0]);
	assert_int_equal(take(f, "web", a, NULL, NULL), -1);
	assert_int_equal(take(f, "web", a6, (void *)f, NULL), s3[0]); /* shareable: anyone */
	assert_int_equal(reuse_count(f->r), 0);
	reuse_bury(f->r);
	for (int i = 0; i < 2; i++) {
		close(s1[i]);
		close(s2[i]);
		close(s3[i]);
	}
}

static void test_private(void **state)
{
	struct fx *f = *state;
	struct sockaddr_any a = v4("10.0.0.1", 80);
	int mine = 1, theirs = 2, s1[2], s2[2];
	bool priv;

	pair(s1);
	pair(s2);
	assert_int_equal(put(f, s1[0], "web", a, NULL), 0);
	assert_int_equal(put(f, s2[0], "web", a, &mine), 0);
	/* Nobody else takes a private connection, shareable or not. */
	assert_int_equal(take(f, "web", a, &theirs, &priv), s1[0]);
	assert_false(priv);
	assert_int_equal(take(f, "web", a, &theirs, NULL), -1);
	assert_int_equal(take(f, "web", a, NULL, NULL), -1);
	/* Its owner does, before any shareable one. */
	assert_int_equal(put(f, s1[0], "web", a, NULL), 0);
	assert_int_equal(take(f, "web", a, &mine, &priv), s2[0]);
	assert_true(priv);
	assert_int_equal(take(f, "web", a, &mine, &priv), s1[0]);
	assert_false(priv);
	/* The owner leaves: its private connections close, the others stay. */
	assert_int_equal(put(f, s1[0], "web", a, NULL), 0);
	assert_int_equal(put(f, s2[0], "web", a, &mine), 0);
	reuse_drop_owner(f->r, &mine);
	assert_true(closed_far(s2[1]));
	assert_false(closed_far(s1[1]));
	assert_int_equal(reuse_count(f->r), 1);
	reuse_bury(f->r);
	close(s1[1]);
	close(s2[1]);
}

/* What the far end did while parked: the take finds it unusable and closes it. */
static void test_dead_on_take(void **state)
{
	struct fx *f = *state;
	struct sockaddr_any a = v4("10.0.0.1", 80);
	int good[2], fin[2], spoke[2];

	pair(good);
	pair(fin);
	pair(spoke);
	assert_int_equal(put(f, good[0], "web", a, NULL), 0);
	assert_int_equal(put(f, fin[0], "web", a, NULL), 0);
	assert_int_equal(put(f, spoke[0], "web", a, NULL), 0);
	shutdown(fin[1], SHUT_WR);
	assert_int_equal(send(spoke[1], "x", 1, 0), 1);
	/* No event dispatched yet: the take itself must see both. */
	assert_int_equal(take(f, "web", a, NULL, NULL), good[0]);
	assert_int_equal(reuse_count(f->r), 0);
	assert_true(closed_far(fin[1]));
	assert_true(closed_far(spoke[1]));
	reuse_bury(f->r);
	close(good[0]);
	close(good[1]);
	close(fin[1]);
	close(spoke[1]);
}

/* A parked connection reports through epoll; an event for one already gone is ignored. */
static void test_events(void **state)
{
	struct fx *f = *state;
	struct sockaddr_any a = v4("10.0.0.1", 80);
	struct epoll_event ev[4];
	int s1[2], s2[2], n;

	pair(s1);
	pair(s2);
	assert_int_equal(put(f, s1[0], "web", a, NULL), 0);
	assert_int_equal(put(f, s2[0], "web", a, NULL), 0);
	assert_int_equal(ev_wait(ev, 4, 0), 0); /* idle: nothing to say */
	close(s1[1]);
	close(s2[1]);
	n = ev_wait(ev, 4, 1000);
	assert_int_equal(n, 2);
	assert_int_equal(((struct handle *)ev[0].data.ptr)->kind, H_IDLE);
	reuse_event(ev[0].data.ptr, ev[0].events);
	assert_int_equal(reuse_count(f->r), 1);
	/* The second one closes some other way before its event is handled. */
	reuse_expire(f->r, 0, 0);
	assert_int_equal(reuse_count(f->r), 0);
	reuse_event(ev[1].data.ptr, ev[1].events); /* fd -1 by now: left alone (ASan checks) */
	reuse_bury(f->r);
}

static void test_bound_and_expiry(void **state)
{
	struct fx *f = *state;
	struct sockaddr_any a = v4("10.0.0.1", 80);
	int s[4][2];
	uint64_t t0 = now_ms();

	for (int i = 0; i < 4; i++)
		pair(s[i]);
	/* At the bound the oldest goes. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(reuse_put(f->r, s[i][0], "web", &a, NULL, 2, 100 * (i + 1)), 0);
	assert_int_equal(reuse_count(f->r), 2);
	assert_true(closed_far(s[0][1]));
	assert_false(closed_far(s[1][1]));
	/* Each expires at its own deadline (200 and 300 ms after t0). */
	reuse_expire(f->r, t0 + 150, 64);
	assert_int_equal(reuse_count(f->r), 2);
	reuse_expire(f->r, t0 + 250, 64);
	assert_int_equal(reuse_count(f->r), 1);
	assert_true(closed_far(s[1][1]));
	assert_false(closed_far(s[2][1]));
	/* Bound 0 (reuse turned off by a reload): nothing kept, the new one closed at once. */
	assert_int_equal(reuse_put(f->r, s[3][0], "web", &a, NULL, 0, 100), 0);
	assert_true(closed_far(s[3][1]));
	assert_true(closed_far(s[2][1]));
	assert_int_equal(reuse_count(f->r), 0);
	reuse_bury(f->r);
	for (int i = 0; i < 4; i++)
		close(s[i][1]);
}

/* ---- which requests may go on a parked connection ---- */

struct req_case {
	const char *name;
	const char *req;         /* head, and what of the body came with it */
	bool taken;              /* goes on the parked connection */
	bool private;            /* the upstream connection becomes this client's */
};

static const struct req_case req_cases[] = {
	{ "GET", "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", true, false },
	{ "HEAD", "HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n", true, false },
	{ "OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", true, false },
	{ "DELETE", "DELETE /a HTTP/1.1\r\nHost: h\r\n\r\n", true, false },
	{ "PUT, body in hand", "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", true,
	  false },
	{ "PUT, body not all in", "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab", false,
	  false },
	{ "PUT, chunked", "PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  false, false },
	{ "POST", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false, false },
	{ "PATCH", "PATCH /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false, false },
	{ "GET, Authorization", "GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: Basic eDp5\r\n\r\n",
	  true, true },
	{ "GET, Proxy-Authorization",
	  "GET /a HTTP/1.1\r\nHost: h\r\nproxy-authorization: Basic eDp5\r\n\r\n", true, true },
	{ "POST, Authorization",
	  "POST /a HTTP/1.1\r\nHost: h\r\nAuthorization: x\r\nContent-Length: 0\r\n\r\n", false,
	  true },
};

static struct gateway gw;

/* A client connection with @req parsed, in pool "web" (direct), reuse on. */
static void conn_with(struct conn *c, struct config *cfg, struct pool *p, struct http_head *h,
		      char *buf, const char *req)
{
	size_t len = strlen(req);

	memset(c, 0, sizeof(*c));
	cfg->upstream_idle_max = 64;
	cfg->upstream_idle_timeout_ms = 10000;
	gw.cfg = cfg;
	snprintf(p->name, sizeof(p->name), "web");
	p->direct = true;
	memcpy(buf, req, len);
	http_head_init(h, true, 16384);
	c->req_len = http_head_parse(h, buf, len);
	assert_true(c->req_len > 0);
	c->gw = &gw;
	c->cfg = cfg;
	c->pool = p;
	c->req = h;
	c->cbuf = buf;
	c->clen = len;
	c->http_fwd = true;
	c->uh = (struct handle){ .kind = H_UPSTREAM, .fd = -1, .owner = c };
	c->uaddr = v4("10.0.0.1", 80);
}

static void test_requests(void **state)
{
	struct fx *f = *state;
	static struct config cfg;
	static struct http_head h;
	static char buf[4096];
	struct pool p = { 0 };
	struct conn c;
	int s[2];

	gw.reuse = f->r;
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		const struct req_case *t = &req_cases[i];

		print_message("%s\n", t->name);
		pair(s);
		conn_with(&c, &cfg, &p, &h, buf, t->req);
		assert_int_equal(reuse_put(f->r, s[0], "web", &c.uaddr, NULL, 64, 10000), 0);
		assert_int_equal(reuse_take_for(&c, &c.uaddr), t->taken);
		assert_int_equal(c.reused, t->taken);
		assert_int_equal(c.reuse_private, t->private);
		if (t->taken) {
			assert_int_equal(c.uh.fd, s[0]);
			/* Answered: parked again, for this client only if it carried credentials. */
			reuse_park(&c);
			assert_int_equal(c.uh.fd, -1);
			assert_int_equal(take(f, "web", c.uaddr, NULL, NULL), t->private ? -1 : s[0]);
			if (t->private)
				assert_int_equal(take(f, "web", c.uaddr, &c, NULL), s[0]);
			close(s[0]);
		}
		reuse_expire(f->r, 0, 0);
		reuse_bury(f->r);
		close(s[1]);
	}
	assert_int_equal(gw.stats.upstream_reused, 7);
}

/* Never: reuse off, a resend after a reused connection failed, CONNECT, raw tunnel, draining. */
static void test_never(void **state)
{
	struct fx *f = *state;
	static struct config cfg;
	static struct http_head h;
	static char buf[4096];
	struct pool p = { 0 };
	struct conn c;
	int s[2];

	gw.reuse = f->r;
	pair(s);
	conn_with(&c, &cfg, &p, &h, buf, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	assert_int_equal(reuse_put(f->r, s[0], "web", &c.uaddr, NULL, 64, 10000), 0);
	cfg.upstream_idle_max = 0;
	assert_false(reuse_take_for(&c, &c.uaddr));
	cfg.upstream_idle_max = 64;
	c.reuse_retried = true;
	assert_false(reuse_take_for(&c, &c.uaddr));
	c.reuse_retried = false;
	c.http_fwd = false; /* CONNECT */
	assert_false(reuse_take_for(&c, &c.uaddr));
	c.http_fwd = true;
	c.raw_tunnel = true; /* action = tunnel: raw bytes follow the head */
	assert_false(reuse_take_for(&c, &c.uaddr));
	c.raw_tunnel = false;
	assert_true(reuse_take_for(&c, &c.uaddr));
	gw.stopping = true;
	reuse_park(&c); /* draining: the caller closes it */
	gw.stopping = false;
	assert_int_equal(c.uh.fd, s[0]);
	assert_int_equal(reuse_count(f->r), 0);
	close(s[0]);
	close(s[1]);
	reuse_bury(f->r);
}

/* A reused connection failed before answering: closed, and @c ready to dial afresh. */
static void test_retry(void **state)
{
	struct fx *f = *state;
	static struct config cfg;
	static struct http_head h;
	static char buf[4096];
	struct pool p = { 0 };
	struct conn c;
	int s[2];

	gw.reuse = f->r;
	pair(s);
	conn_with(&c, &cfg, &p, &h, buf, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	assert_int_equal(reuse_put(f->r, s[0], "web", &c.uaddr, NULL, 64, 10000), 0);
	c.attempts = 1; /* dial() counted it */
	assert_true(reuse_take_for(&c, &c.uaddr));
	assert_int_equal(obuf_put(&c.to_up, "GET", 3), 0); /* the part not sent */
	c.upstream_eof = true;
	c.dial_err = -ECONNRESET;
	reuse_retry(&c);
	assert_true(closed_far(s[1]));
	assert_int_equal(c.uh.fd, -1);
	assert_false(c.reused);
	assert_true(c.reuse_retried);
	assert_false(c.upstream_eof);
	assert_int_equal(obuf_pending(&c.to_up), 0);
	assert_int_equal(c.attempts, 0);
	assert_true(c.uaddr_set); /* a direct pool dials the same address, no look-up */
	assert_false(reuse_take_for(&c, &c.uaddr)); /* and on a fresh connection */
	close(s[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keys_and_lifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_private, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_on_take, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bound_and_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
