// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Active health checks against real loopback sockets, polled by the real ev poller:
 * check = connect to a listening and to a closed port, check = http_connect against
 * an in-test proxy that answers 200, 407, 503, garbage, nothing or a close, check =
 * none (only down servers), a reload that keeps, adds and drops servers, the drain,
 * and socket() failing (__wrap_socket). The status line parser on every truncation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ev.h"
#include "gateway-t.h"
#include "health.h"
#include "pool.h"

#define MAX_PEERS 256
#define CHECK_TARGET "127.0.0.1:443"

/* socket() fails with EMFILE while set; the test's own sockets are made before. */
static bool socket_fails;

int __real_socket(int domain, int type, int protocol);
int __wrap_socket(int domain, int type, int protocol);
int __wrap_socket(int domain, int type, int protocol)
{
	if (socket_fails) {
		errno = EMFILE;
		return -1;
	}
	return __real_socket(domain, type, protocol);
}

/* The gateway the checker reads, and a proxy for it to check. */
static struct fx {
	struct gateway *gw;
	char path[64];
	int lfd;                 /* the in-test proxy's listener */
	unsigned port_open, port_closed, port_closed2;
	const char *answer;      /* what the proxy says: NULL nothing, "" a close at once */
	int peers[MAX_PEERS];    /* its connections, each answered once */
	bool answered[MAX_PEERS];
	unsigned npeers;
	char req[512];           /* the first request it read */
	size_t reqlen;
} fx;

/* A port nothing listens on: bound, its number noted, closed. */
static unsigned closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int setup(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	(void)state;
	memset(&fx, 0, sizeof(fx));
	socket_fails = false;
	assert_int_equal(ev_open(), 0);
	fx.gw = calloc(1, sizeof(*fx.gw));
	assert_non_null(fx.gw);
	fx.gw->health = health_new();
	assert_non_null(fx.gw->health);
	fx.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fx.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fx.lfd, 64), 0);
	assert_int_equal(getsockname(fx.lfd, (struct sockaddr *)&a, &len), 0);
	fx.port_open = ntohs(a.sin_port);
	fx.port_closed = closed_port();
	fx.port_closed2 = closed_port();
	strcpy(fx.path, "/tmp/test_health.XXXXXX");
	assert_true(mkstemp(fx.path) >= 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	health_free(fx.gw->health);
	config_put(fx.gw->cfg);
	free(fx.gw);
	for (unsigned i = 0; i < fx.npeers; i++)
		if (fx.peers[i] >= 0)
			close(fx.peers[i]);
	close(fx.lfd);
	unlink(fx.path);
	ev_close();
	return 0;
}

/*
 * A config with one pool "p" of @servers (ports; 0 ends) and the pool keys @keys, as
 * the daemon would load it; refs 1, owned by the caller.
 */
static struct config *load(const unsigned *servers, const char *keys)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	char err[512];
	FILE *f = fopen(fx.path, "w");

	assert_non_null(cfg);
	assert_non_null(f);
	fprintf(f, "[gateway]\nlisten = 127.0.0.1:1\n[pool p]\n%s\n", keys);
	for (unsigned i = 0; servers[i]; i++)
		fprintf(f, "server = 127.0.0.1:%u\n", servers[i]);
	fclose(f);
	if (config_load(fx.path, cfg, err, sizeof(err)))
		fail_msg("config: %s", err);
	cfg->refs = 1;
	return cfg;
}

/* Make @cfg the current config, as a reload does; the checker follows on its next tick. */
static void use(struct config *cfg)
{
	config_put(fx.gw->cfg);
	fx.gw->cfg = cfg;
	health_tick(fx.gw);
}

static struct server_state *state_of(unsigned i)
{
	return fx.gw->cfg->pools[0].servers[i].state;
}

/* The in-test proxy: accept, read the request, say fx.answer once it is complete. */
static void serve(void)
{
	int fd;

	while (fx.npeers < MAX_PEERS && (fd = accept4(fx.lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		if (fx.answer && !fx.answer[0]) {
			close(fd);
			fd = -1;
		}
		fx.peers[fx.npeers++] = fd;
	}
	for (unsigned i = 0; i < fx.npeers; i++) {
		char buf[512];
		ssize_t n;

		if (fx.peers[i] < 0 || fx.answered[i])
			continue;
		n = recv(fx.peers[i], buf, sizeof(buf), 0);
		if (n <= 0)
			continue;
		if (!fx.reqlen) {
			memcpy(fx.req, buf, n);
			fx.reqlen = n;
		}
		if (fx.answer && memmem(buf, n, "\r\n\r\n", 4)) {
			send(fx.peers[i], fx.answer, strlen(fx.answer), MSG_NOSIGNAL);
			fx.answered[i] = true;
		}
	}
}

/* One round of the daemon's loop, waiting at most 5 ms. */
static void round_once(void)
{
	struct epoll_event ev[16];
	int t = health_next_ms(fx.gw), n;

	n = ev_wait(ev, 16, t < 0 || t > 5 ? 5 : t);
	for (int i = 0; i < n; i++) {
		struct handle *h = ev[i].data.ptr;

		assert_int_equal(h->kind, H_HEALTH);
		health_event(fx.gw, h, ev[i].events);
	}
	health_tick(fx.gw);
	serve();
}

static void run_ms(unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		round_once();
}

/* Run until server @i's down is @down; fails after @max_ms. Returns the time it took. */
static uint64_t run_until_down(unsigned i, bool down, unsigned max_ms)
{
	uint64_t start = now_ms();

	while (state_of(i)->down != down) {
		if (now_ms() - start > max_ms)
			fail_msg("server %u not %s after %u ms (last: '%s')", i, down ? "down" : "up",
				 max_ms, state_of(i)->last);
		round_once();
	}
	return now_ms() - start;
}

static void test_parse_status(void **state)
{
	static const struct {
		const char *in;
		int want;
	} cases[] = {
		{ "HTTP/1.1 200 Connection established\r\n\r\n", 200 },
		{ "HTTP/1.0 407 Proxy Authentication Required\r\n", 407 },
		{ "HTTP/1.1 503\r\n", 503 },
		{ "HTTP/1.1 204\n", 204 },
		{ "HTTP/2 200 \r\n", -EBADMSG },
		{ "HTTP/1.x 200 \r\n", -EBADMSG },
		{ "http/1.1 200 OK\r\n", -EBADMSG },
		{ "HTTP/1.1  200 OK\r\n", -EBADMSG },
		{ "HTTP/1.1 20 OK\r\n", -EBADMSG },
		{ "HTTP/1.1 2000 OK\r\n", -EBADMSG },
		{ "SSH-2.0-OpenSSH_9.2\r\n", -EBADMSG },
		{ "\r\n", -EBADMSG },
	};
	const char *full = cases[0].in;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(health_parse_status(cases[i].in, strlen(cases[i].in)), cases[i].want);
	/* Every truncation of a good one: more needed up to the byte after the code. */
	for (size_t len = 0; len <= strlen(full); len++)
		assert_int_equal(health_parse_status(full, len), len < 13 ? 0 : 200);
	/* A wrong byte decides at once, however short the prefix. */
	assert_int_equal(health_parse_status("X", 1), -EBADMSG);
	assert_int_equal(health_parse_status("HTTP/1.1 2x", 11), -EBADMSG);
}

/* check = connect: a down server whose port listens comes up after `rise` checks. */
static void test_connect_rise(void **state)
{
	const unsigned servers[] = { fx.port_open, 0 };
	uint64_t took;

	(void)state;
	use(load(servers, "check = connect\ncheck_interval_ms = 100\ncheck_timeout_ms = 50\n"
			  "rise = 2\nfall = 2"));
	state_of(0)->down = true;
	took = run_until_down(0, false, 1000);
	assert_true(took >= 100); /* two checks, check_interval_ms apart */
	assert_memory_equal(state_of(0)->last, "ok ", 3);
	assert_true(state_of(0)->last_ms > 0);
	assert_int_equal(state_of(0)->fails, 0);
}

/* check = connect: a closed port goes down after `fall` refused checks, once. */
static void test_connect_fall(void **state)
{
	const unsigned servers[] = { fx.port_closed, fx.port_open, 0 };

	(void)state;
	use(load(servers, "check = connect\ncheck_interval_ms = 100\ncheck_timeout_ms = 50\n"
			  "rise = 2\nfall = 2"));
	run_until_down(0, true, 1000);
	assert_string_equal(state_of(0)->last, "refused");
	assert_int_equal(state_of(0)->downs, 1);
	run_ms(250); /* still down, still checked, not taken down again */
	assert_true(state_of(0)->down);
	assert_int_equal(state_of(0)->downs, 1);
	assert_false(state_of(1)->down);
	assert_memory_equal(state_of(1)->last, "ok ", 3);
}

static const char http_keys[] = "check = http_connect\ncheck_target = " CHECK_TARGET "\n"
				"check_interval_ms = 100\ncheck_timeout_ms = 30\nrise = 2\nfall = 2";

/* http_connect: a 2xx or a 407 is healthy; the request is a bare CONNECT to check_target. */
static void test_http_ok(void **state)
{
	static const struct {
		const char *answer, *last;
	} cases[] = {
		{ "HTTP/1.1 200 Connection established\r\n\r\n", "ok " },
		{ "HTTP/1.0 204 No Content\r\n\r\n", "ok " },
		{ "HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
		  "ok 407 " },
	};
	const unsigned servers[] = { fx.port_open, 0 };
	static const char want[] = "CONNECT " CHECK_TARGET " HTTP/1.1\r\nHost: " CHECK_TARGET "\r\n\r\n";

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx.answer = cases[i].answer;
		use(load(servers, http_keys));
		state_of(0)->down = true;
		run_until_down(0, false, 1000);
		assert_memory_equal(state_of(0)->last, cases[i].last, strlen(cases[i].last));
	}
	assert_int_equal(fx.reqlen, sizeof(want) - 1);
	assert_memory_equal(fx.req, want, sizeof(want) - 1);
}

/* http_connect: anything but a 2xx or 407 in time takes the server down, saying why. */
static void test_http_failures(void **state)
{
	static const struct {
		const char *answer, *last;
	} cases[] = {
		{ "HTTP/1.1 503 Service Unavailable\r\n\r\n", "status 503" },
		{ "HTTP/1.1 403 Forbidden\r\n\r\n", "status 403" },
		{ "SSH-2.0-OpenSSH_9.2\r\n", "bad answer" },
		{ NULL, "timeout" },  /* accepts, never answers */
		{ "", "reset" },      /* accepts, closes */
	};
	const unsigned servers[] = { fx.port_open, 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx.answer = cases[i].answer;
		use(load(servers, http_keys));
		/* The reload kept the server's state (shared by address): start it afresh. */
		state_of(0)->down = false;
		state_of(0)->fails = 0;
		run_until_down(0, true, 1000);
		assert_string_equal(state_of(0)->last, cases[i].last);
	}
}

/* check = none: up servers are left alone; a down one is probed until it rises. */
static void test_none_only_down(void **state)
{
	const unsigned servers[] = { fx.port_closed, fx.port_open, 0 };
	uint64_t up_at;

	(void)state;
	use(load(servers, "check_interval_ms = 100\ncheck_timeout_ms = 50\nrise = 2\nfall = 2"));
	assert_int_equal(fx.gw->cfg->pools[0].check, CHECK_NONE);
	run_ms(300);
	for (unsigned i = 0; i < 2; i++) {
		assert_string_equal(state_of(i)->last, "");
		assert_int_equal(state_of(i)->last_ms, 0);
	}
	/* As passive failures would leave them. */
	state_of(0)->down = state_of(1)->down = true;
	run_until_down(1, false, 1000);
	assert_true(state_of(0)->down);
	assert_string_equal(state_of(0)->last, "refused");
	up_at = state_of(1)->last_ms;
	run_ms(250);
	assert_int_equal(state_of(1)->last_ms, up_at); /* up: no more checks */
	assert_true(state_of(0)->last_ms > up_at);     /* down: still checked */
}

/*
 * A reload: a server that stays keeps its state and checks, a new one is checked, a
 * removed one is not any more.
 */
static void test_reload(void **state)
{
	static const char keys[] = "check = connect\ncheck_interval_ms = 100\ncheck_timeout_ms = 50\n"
				   "rise = 2\nfall = 2";
	const unsigned before[] = { fx.port_open, fx.port_closed, 0 };
	const unsigned after[] = { fx.port_open, fx.port_closed2, 0 };
	struct config *old;
	struct server_state *kept, *gone;
	uint64_t gone_ms;

	(void)state;
	use(load(before, keys));
	run_until_down(1, true, 1000);
	old = fx.gw->cfg;
	old->refs++; /* as a connection of the old config would */
	kept = state_of(0);
	gone = state_of(1);
	use(load(after, keys));
	assert_ptr_equal(state_of(0), kept);
	assert_false(state_of(1)->down);
	gone_ms = gone->last_ms;
	run_until_down(1, true, 1000);
	assert_string_equal(state_of(1)->last, "refused");
	run_ms(150);
	assert_int_equal(gone->last_ms, gone_ms);
	assert_true(kept->last_ms > gone_ms);
	config_put(old);
}

/* A reload that shortens check_interval_ms: the next check comes within the new one. */
static void test_reload_shorter_interval(void **state)
{
	const unsigned servers[] = { fx.port_closed, 0 };

	(void)state;
	use(load(servers, "check = connect\ncheck_interval_ms = 600000\ncheck_timeout_ms = 50"));
	use(load(servers, "check = connect\ncheck_interval_ms = 100\ncheck_timeout_ms = 50"));
	assert_true(health_next_ms(fx.gw) <= 100);
	run_ms(250);
	assert_string_equal(state_of(0)->last, "refused");
}

/* Draining: no check starts, and the loop is not woken for one. */
static void test_stopping(void **state)
{
	const unsigned servers[] = { fx.port_closed, 0 };

	(void)state;
	use(load(servers, "check = connect\ncheck_interval_ms = 100\ncheck_timeout_ms = 50"));
	fx.gw->stopping = true;
	health_tick(fx.gw);
	assert_int_equal(health_next_ms(fx.gw), -1);
	run_ms(250);
	assert_int_equal(state_of(0)->last_ms, 0);
}

/* Out of fds: the round is skipped, the server not blamed, the loop not spun. */
static void test_socket_fails(void **state)
{
	const unsigned servers[] = { fx.port_closed, 0 };
	unsigned rounds = 0;
	uint64_t end;

	(void)state;
	use(load(servers, "check = connect\ncheck_interval_ms = 100\ncheck_timeout_ms = 50\nfall = 1"));
	socket_fails = true;
	for (end = now_ms() + 250; now_ms() < end; rounds++)
		round_once();
	assert_string_equal(state_of(0)->last, "");
	assert_false(state_of(0)->down);
	assert_true(health_next_ms(fx.gw) > 0);
	assert_true(rounds < 250 / 5 + 10); /* each round waited */
	socket_fails = false;
	run_until_down(0, true, 500);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_status),
		T(test_connect_rise),
		T(test_connect_fall),
		T(test_http_ok),
		T(test_http_failures),
		T(test_none_only_down),
		T(test_reload),
		T(test_reload_shorter_interval),
		T(test_stopping),
		T(test_socket_fails),
	};

	signal(SIGPIPE, SIG_IGN); /* as the daemon: EPIPE, not a signal */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
