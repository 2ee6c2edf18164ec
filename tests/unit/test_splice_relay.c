// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * splice_relay.c, the splice relay of one tunnel: bytes both ways in order, EOF and
 * shutdown per direction, a full pipe, socket errors and the reset drain.
 *
 * Everything is real but shutdown(), which the link wraps (-Wl,--wrap) to count calls
 * before doing them: the tunnel sockets are one end of AF_UNIX socketpairs (splice()
 * works on them both ways, and they move bytes synchronously, so no test waits), the
 * test plays the client and the upstream on the other ends, and epoll is ev.c's.
 *
 *   client   remote[UP] <-> h[UP]     source of UP, destination of DOWN
 *   upstream remote[DOWN] <-> h[DOWN] source of DOWN, destination of UP
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "sock_fx.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "ev.h"
#include "relay_shared.h"
#include "splice_relay.h"

#define UP TG_DIR_UP
#define DOWN TG_DIR_DOWN

#define PIPE_BYTES (256 * 1024) /* SPLICE_PIPE_BYTES */
#define MAX_FD 1024
#define MAX_STEPS 100000        /* bound on relay steps of a transfer */

/* Bytes the client [UP] and the upstream [DOWN] send, random. */
static uint8_t data[2][1 << 20];

static int shutdowns[MAX_FD];

int __real_shutdown(int fd, int how);

int __wrap_shutdown(int fd, int how)
{
	assert_int_equal(how, SHUT_WR);
	assert_in_range(fd, 0, MAX_FD - 1);
	shutdowns[fd]++;
	return __real_shutdown(fd, how);
}

static struct {
	struct tunnel t;
	struct handle h[2];
	int remote[2];           /* the client's end [UP], the upstream's [DOWN] */
	size_t sent[2], got[2];  /* of data[d]: sent by the remote, arrived at the other */
} fx;

static int src(int d)
{
	return fx.h[d].fd;
}

static int dst(int d)
{
	return fx.h[!d].fd;
}

static int queued(int fd)
{
	int n = -1;

	assert_int_equal(ioctl(fd, SIOCINQ, &n), 0);
	return n;
}

/* The remote of @d sends the next @n bytes of its data, all of them. */
static void remote_send(int d, size_t n)
{
	assert_int_equal(send(fx.remote[d], data[d] + fx.sent[d], n, MSG_DONTWAIT), (ssize_t)n);
	fx.sent[d] += n;
}

/* The remote of @d sends what its socket takes of the next bytes, up to @total in all. */
static void remote_push(int d, size_t total)
{
	ssize_t n;

	if (fx.sent[d] >= total)
		return;
	n = send(fx.remote[d], data[d] + fx.sent[d], total - fx.sent[d], MSG_DONTWAIT);
	if (n < 0)
		assert_int_equal(errno, EAGAIN);
	else
		fx.sent[d] += n;
}

/*
 * The far end of @d reads what arrived of @d's data and checks it is the next bytes.
 * Stops at the end of the stream (expect_eof() checks that).
 */
static void remote_pull(int d)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = recv(fx.remote[!d], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		assert_true(fx.got[d] + n <= fx.sent[d]);
		assert_memory_equal(buf, data[d] + fx.got[d], n);
		fx.got[d] += n;
	}
	if (n < 0)
		assert_int_equal(errno, EAGAIN);
}

static void expect_eof(int d)
{
	sock_expect_eof(fx.remote[!d]);
}

static void expect_open(int d)
{
	char c;

	assert_int_equal(recv(fx.remote[!d], &c, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

/* Fill the destination of @d until it takes nothing more; returns the bytes written. */
static size_t fill_dst(int d)
{
	return sock_fill(dst(d));
}

/* The far end of @d's destination reads the @n bytes fill_dst() wrote. */
static void drain_fill(int d, size_t n)
{
	sock_drain(fx.remote[!d], n);
}

/* Relay steps until @d's bytes sent so far have all arrived. */
static void relay_until_arrived(int d)
{
	for (int i = 0; i < MAX_STEPS && fx.got[d] < fx.sent[d]; i++) {
		assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
		remote_pull(d);
	}
	assert_int_equal(fx.got[d], fx.sent[d]);
}

/* Nothing that epoll watches is ready: the loop would sleep. */
static void expect_no_wakeup(void)
{
	struct epoll_event ev[4];
	int n = ev_wait(ev, 4, 0);

	for (int i = 0; i < n; i++)
		fail_msg("fd %d woke epoll: %#x", ((struct handle *)ev[i].data.ptr)->fd,
			 ev[i].events);
	assert_int_equal(n, 0);
}

static void new_pair(int d, enum handle_kind kind)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	assert_true(sv[0] < MAX_FD);
	fx.h[d] = (struct handle){ .kind = kind, .fd = sv[0] };
	fx.remote[d] = sv[1];
}

static int setup(void **state)
{
	(void)state;
	memset(&fx, 0, sizeof(fx));
	memset(shutdowns, 0, sizeof(shutdowns));
	assert_int_equal(ev_open(), 0);
	new_pair(UP, H_CLIENT);
	new_pair(DOWN, H_UPSTREAM);
	fx.t = (struct tunnel){ .id = 5, .kind = RK_SPLICE, .h = { &fx.h[UP], &fx.h[DOWN] },
				.fail_dir = -1 };
	for (int d = 0; d < 2; d++)
		fx.t.sdir[d].pipe[0] = fx.t.sdir[d].pipe[1] = -1;
	assert_int_equal(splice_relay_start(&fx.t), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	splice_relay_stop(&fx.t);
	for (int d = 0; d < 2; d++) {
		if (fx.h[d].fd >= 0)
			close(fx.h[d].fd);
		if (fx.remote[d] >= 0)
			close(fx.remote[d]);
	}
	ev_close();
	return 0;
}

static void test_start_makes_pipes(void **state)
{
	(void)state;
	for (int d = 0; d < 2; d++) {
		assert_true(fx.t.sdir[d].pipe[0] >= 0);
		assert_int_equal(fcntl(fx.t.sdir[d].pipe[1], F_GETPIPE_SZ), PIPE_BYTES);
		assert_int_equal(fx.h[d].events, EPOLLIN);
		assert_true(fx.h[d].in_epoll);
	}
	splice_relay_stop(&fx.t);
	for (int d = 0; d < 2; d++) {
		assert_int_equal(fx.t.sdir[d].pipe[0], -1);
		assert_int_equal(fx.t.sdir[d].pipe[1], -1);
	}
}

/* More than a pipe and a socket buffer hold, both ways at once. */
static void test_bytes_both_ways_in_order(void **state)
{
	const size_t total[2] = { sizeof(data[UP]), 300000 };
	int i;

	(void)state;
	for (i = 0; i < MAX_STEPS && (fx.got[UP] < total[UP] || fx.got[DOWN] < total[DOWN]); i++) {
		remote_push(UP, total[UP]);
		remote_push(DOWN, total[DOWN]);
		assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
		remote_pull(UP);
		remote_pull(DOWN);
	}
	assert_int_equal(fx.got[UP], total[UP]);
	assert_int_equal(fx.got[DOWN], total[DOWN]);
	assert_int_equal(fx.t.spliced[UP], total[UP]);
	assert_int_equal(fx.t.spliced[DOWN], total[DOWN]);
	assert_int_equal(fx.t.sdir[UP].in_pipe, 0);
	assert_int_equal(fx.t.sdir[DOWN].in_pipe, 0);
	assert_int_equal(shutdowns[dst(UP)] + shutdowns[dst(DOWN)], 0);
}

/* The far end of @d reads at most @max bytes of what arrived. */
static void remote_pull_max(int d, size_t max)
{
	uint8_t buf[4096];
	ssize_t n;

	assert_true(max <= sizeof(buf));
	n = recv(fx.remote[!d], buf, max, MSG_DONTWAIT);
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		return;
	}
	assert_true(n > 0);
	assert_memory_equal(buf, data[d] + fx.got[d], n);
	fx.got[d] += n;
}

/* A reader slower than the writer: partial writes out of the pipe keep the order. */
static void test_slow_reader_keeps_order(void **state)
{
	const size_t total = 600000;
	bool backpressure = false;

	(void)state;
	for (int i = 0; i < MAX_STEPS && fx.got[UP] < total; i++) {
		remote_push(UP, total);
		assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
		if (fx.t.sdir[UP].in_pipe) {
			backpressure = true;
			assert_true(fx.h[DOWN].events & EPOLLOUT);
		}
		remote_pull_max(UP, 4096);
	}
	assert_true(backpressure);
	assert_int_equal(fx.got[UP], total);
	assert_int_equal(fx.t.spliced[UP], total);
	assert_int_equal(fx.t.sdir[UP].in_pipe, 0);
}

static void test_eof_shuts_only_its_direction(void **state)
{
	(void)state;
	remote_send(UP, 5);
	shutdown(fx.remote[UP], SHUT_WR);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	remote_pull(UP);
	assert_int_equal(fx.got[UP], 5);
	expect_eof(UP);
	expect_open(DOWN);
	assert_true(fx.t.sdir[UP].shut);
	assert_false(fx.t.sdir[DOWN].shut);
	assert_int_equal(shutdowns[dst(UP)], 1);
	assert_int_equal(shutdowns[dst(DOWN)], 0);
	assert_int_equal(fx.h[UP].events, 0);
	assert_int_equal(fx.h[DOWN].events, EPOLLIN);

	remote_send(DOWN, 7);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	remote_pull(DOWN);
	assert_int_equal(fx.got[DOWN], 7);
	assert_int_equal(shutdowns[dst(UP)], 1);

	shutdown(fx.remote[DOWN], SHUT_WR);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_DONE);
	expect_eof(DOWN);
	assert_int_equal(shutdowns[dst(UP)], 1);
	assert_int_equal(shutdowns[dst(DOWN)], 1);
	assert_int_equal(fx.t.spliced[UP], 5);
	assert_int_equal(fx.t.spliced[DOWN], 7);
}

/* Read side ended and write side shut: the socket leaves epoll (else EPOLLHUP wakes it). */
static void test_done_socket_leaves_epoll(void **state)
{
	size_t filled;

	(void)state;
	filled = fill_dst(DOWN);
	remote_send(DOWN, 10);
	shutdown(fx.remote[DOWN], SHUT_WR);
	remote_send(UP, 3);
	shutdown(fx.remote[UP], SHUT_WR);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	assert_int_equal(fx.t.sdir[DOWN].in_pipe, 10);
	assert_false(fx.t.sdir[DOWN].shut);
	assert_true(fx.t.sdir[UP].shut);
	assert_false(fx.h[DOWN].in_epoll);
	assert_int_equal(fx.h[UP].events, EPOLLOUT);
	expect_no_wakeup();

	drain_fill(DOWN, filled);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_DONE);
	remote_pull(DOWN);
	remote_pull(UP);
	assert_int_equal(fx.got[DOWN], 10);
	assert_int_equal(fx.got[UP], 3);
	expect_eof(DOWN);
	expect_eof(UP);
}

/* A destination is the other direction's source: its error is the other one's reset. */
static void test_destination_error_blames_other_direction(void **state)
{
	(void)state;
	close(fx.remote[DOWN]);
	fx.remote[DOWN] = -1;
	remote_send(UP, 100);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_PEER_RESET);
	assert_int_equal(fx.t.fail_dir, DOWN);
	assert_string_equal(fx.t.fail_why, strerror(EPIPE));
}

static void test_destination_error_blames_other_direction_down(void **state)
{
	(void)state;
	close(fx.remote[UP]);
	fx.remote[UP] = -1;
	remote_send(DOWN, 100);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_PEER_RESET);
	assert_int_equal(fx.t.fail_dir, UP);
	assert_string_equal(fx.t.fail_why, strerror(EPIPE));
}

/* The client resets (closes with bytes unread): what it sent first still goes through. */
static void test_source_error_blames_its_direction(void **state)
{
	(void)state;
	remote_send(DOWN, 10);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	remote_send(UP, 5);
	close(fx.remote[UP]);
	fx.remote[UP] = -1;
	assert_int_equal(splice_relay_event(&fx.t), RELAY_PEER_RESET);
	assert_int_equal(fx.t.fail_dir, UP);
	assert_string_equal(fx.t.fail_why, strerror(ECONNRESET));
	remote_pull(UP);
	assert_int_equal(fx.got[UP], 5);
	assert_int_equal(fx.t.spliced[UP], 5);
}

/*
 * Small writes fill the pipe's slots long before its bytes: the source, readable but
 * not readable into the pipe, must not be watched until bytes leave it.
 */
static void test_full_pipe_stops_watching_source(void **state)
{
	size_t filled, in_pipe;

	(void)state;
	filled = fill_dst(UP);
	for (int i = 0; i < 100; i++)
		remote_send(UP, 100);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	in_pipe = fx.t.sdir[UP].in_pipe;
	assert_in_range(in_pipe, 1, 9999); /* the pipe's slots ran out, not its bytes */
	assert_int_equal(queued(src(UP)), 10000 - in_pipe);
	assert_int_equal(fx.h[UP].events, 0);
	assert_int_equal(fx.h[DOWN].events, EPOLLIN | EPOLLOUT);
	expect_no_wakeup();
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	assert_int_equal(fx.t.sdir[UP].in_pipe, in_pipe);

	drain_fill(UP, filled);
	relay_until_arrived(UP);
	assert_int_equal(fx.got[UP], 10000);
	assert_int_equal(fx.t.spliced[UP], 10000);
	assert_int_equal(fx.h[UP].events, EPOLLIN);
	assert_int_equal(fx.h[DOWN].events, EPOLLIN);
}

/* The reset client's last bytes and the pipe reach the upstream; no FIN follows them. */
static void test_drain_reset_delivers_pipe(void **state)
{
	size_t filled;

	(void)state;
	filled = fill_dst(UP);
	remote_send(UP, 1000);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	assert_int_equal(fx.t.sdir[UP].in_pipe, 1000);

	/* The client resets: bytes of its own unread, 500 more sent before. */
	fx.t.rst = true;
	assert_int_equal(send(src(UP), "x", 1, MSG_DONTWAIT), 1);
	remote_send(UP, 500);
	close(fx.remote[UP]);
	fx.remote[UP] = -1;
	assert_int_equal(splice_relay_drain_reset(&fx.t, UP), 0);
	assert_true(fx.t.sdir[UP].eof);
	assert_int_equal(fx.t.sdir[UP].in_pipe, 1500);

	drain_fill(UP, filled);
	assert_int_equal(splice_relay_drain_reset(&fx.t, UP), 1);
	remote_pull(UP);
	assert_int_equal(fx.got[UP], 1500);
	assert_int_equal(fx.t.spliced[UP], 1500);
	expect_open(UP);
	assert_int_equal(shutdowns[dst(UP)], 0);
}

/* The source's error alone ends it: what waited in the pipe goes out all the same. */
static void test_drain_reset_after_source_error(void **state)
{
	size_t filled;

	(void)state;
	filled = fill_dst(UP);
	remote_send(UP, 1000);
	assert_int_equal(splice_relay_event(&fx.t), RELAY_IDLE);
	assert_int_equal(send(src(UP), "x", 1, MSG_DONTWAIT), 1);
	close(fx.remote[UP]);
	fx.remote[UP] = -1;
	drain_fill(UP, filled);
	fx.t.rst = true;
	assert_int_equal(splice_relay_drain_reset(&fx.t, UP), 1);
	remote_pull(UP);
	assert_int_equal(fx.got[UP], 1000);
	expect_open(UP);
}

static void test_drain_reset_destination_failed(void **state)
{
	(void)state;
	fx.t.rst = true;
	remote_send(UP, 100);
	close(fx.remote[DOWN]);
	fx.remote[DOWN] = -1;
	assert_int_equal(splice_relay_drain_reset(&fx.t, UP), -1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_start_makes_pipes),
		T(test_bytes_both_ways_in_order),
		T(test_slow_reader_keeps_order),
		T(test_eof_shuts_only_its_direction),
		T(test_done_socket_leaves_epoll),
		T(test_destination_error_blames_other_direction),
		T(test_destination_error_blames_other_direction_down),
		T(test_source_error_blames_its_direction),
		T(test_full_pipe_stops_watching_source),
		T(test_drain_reset_delivers_pipe),
		T(test_drain_reset_after_source_error),
		T(test_drain_reset_destination_failed),
	};
	uint32_t x = 2463534242u;

	signal(SIGPIPE, SIG_IGN); /* as the daemon: EPIPE, not a signal */
	for (int d = 0; d < 2; d++)
		for (size_t i = 0; i < sizeof(data[d]); i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			data[d][i] = (uint8_t)x;
		}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
