// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The splice relay: a pipe per direction, splice() in and out. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ev.h"
#include "relay_shared.h"
#include "splice_relay.h"

#define SPLICE_PIPE_BYTES (256 * 1024)
#define SPLICE_ROUNDS 16

static void splice_events(struct tunnel *t)
{
	struct splice_dir *up = &t->sdir[TG_DIR_UP], *down = &t->sdir[TG_DIR_DOWN];
	uint32_t ce = 0, ue = 0;

	if (!up->eof && up->in_pipe < SPLICE_PIPE_BYTES && !up->in_blocked)
		ce |= EPOLLIN;
	if (!down->eof && down->in_pipe < SPLICE_PIPE_BYTES && !down->in_blocked)
		ue |= EPOLLIN;
	if (up->in_pipe)
		ue |= EPOLLOUT;
	if (down->in_pipe)
		ce |= EPOLLOUT;
	ev_set(t->h[TG_DIR_UP], ce);
	ev_set(t->h[TG_DIR_DOWN], ue);
}

int splice_relay_start(struct tunnel *t)
{
	for (int d = 0; d < 2; d++) {
		if (pipe2(t->sdir[d].pipe, O_NONBLOCK | O_CLOEXEC))
			return -errno;
		fcntl(t->sdir[d].pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES);
	}
	splice_events(t);
	return 0;
}

void splice_relay_stop(struct tunnel *t)
{
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < 2; i++)
			if (t->sdir[d].pipe[i] >= 0) {
				close(t->sdir[d].pipe[i]);
				t->sdir[d].pipe[i] = -1;
			}
}

/* Socket to pipe. Returns 1 if bytes moved, 0 if none, -errno on a source error. */
static int pump_in(struct tunnel *t, int d)
{
	struct splice_dir *s = &t->sdir[d];
	ssize_t n;

	if (s->eof || s->in_pipe >= SPLICE_PIPE_BYTES)
		return 0;
	n = splice(dir_src(t, d), NULL, s->pipe[1], NULL, SPLICE_PIPE_BYTES - s->in_pipe,
		   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		s->in_pipe += n;
		return 1;
	}
	if (n == 0) {
		s->eof = true;
		tunnel_note_fin(t, d);
		return 0;
	}
	if (errno != EAGAIN && errno != EINTR)
		return -errno;
	/*
	 * A pipe holds a page per small write: 64 writes of 1000 bytes fill a 256 KiB
	 * pipe. Nothing taken while bytes wait in it means it may be full; polling the
	 * readable source would then spin, so wait until bytes leave the pipe.
	 */
	if (s->in_pipe)
		s->in_blocked = true;
	return 0;
}

/* Pipe to socket. Returns 1 if bytes moved, 0 if none, -errno on a destination error. */
static int pump_out(struct tunnel *t, int d)
{
	struct splice_dir *s = &t->sdir[d];
	ssize_t n;

	if (!s->in_pipe)
		return 0;
	n = splice(s->pipe[0], NULL, dir_dst(t, d), NULL, s->in_pipe,
		   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		s->in_pipe -= n;
		s->in_blocked = false;
		t->spliced[d] += n;
		t->last_ms = now_ms();
		return 1;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		return -errno;
	return 0;
}

/*
 * Move what can be moved in direction @d. Returns 0, or -errno on a socket error with
 * the direction whose source failed in @failed (a destination is the other one's source).
 */
static int splice_pump(struct tunnel *t, int d, int *failed)
{
	struct splice_dir *s = &t->sdir[d];

	for (int i = 0; i < SPLICE_ROUNDS; i++) {
		int in = pump_in(t, d), out;

		if (in < 0) {
			*failed = d;
			return in;
		}
		out = pump_out(t, d);
		if (out < 0) {
			*failed = !d;
			return out;
		}
		if (!in && !out)
			break;
	}
	if (s->eof && !s->in_pipe && !s->shut && !t->rst) {
		shutdown(dir_dst(t, d), SHUT_WR);
		s->shut = true;
	}
	return 0;
}

enum relay_step splice_relay_event(struct tunnel *t)
{
	int err, failed;

	for (int d = 0; d < 2; d++) {
		err = splice_pump(t, d, &failed);
		if (err) {
			t->fail_dir = failed;
			t->fail_why = strerror(-err);
			return RELAY_PEER_RESET;
		}
	}
	if (t->sdir[0].shut && t->sdir[1].shut)
		return RELAY_DONE;
	splice_events(t);
	tunnel_drop_if_done(t->h[TG_DIR_UP], t->sdir[TG_DIR_UP].eof, t->sdir[TG_DIR_DOWN].shut);
	tunnel_drop_if_done(t->h[TG_DIR_DOWN], t->sdir[TG_DIR_DOWN].eof, t->sdir[TG_DIR_UP].shut);
	return RELAY_IDLE;
}

int splice_relay_drain_reset(struct tunnel *t, int d)
{
	struct splice_dir *s = &t->sdir[d];
	int failed;

	for (int i = 0; i < SPLICE_ROUNDS; i++) {
		size_t before = s->in_pipe;
		bool eof = s->eof;

		if (splice_pump(t, d, &failed)) {
			if (failed != d)
				return -1;
			s->eof = true; /* the source's error ends what it can give */
		}
		if (s->in_pipe == before && s->eof == eof)
			break;
	}
	return s->eof && !s->in_pipe;
}
