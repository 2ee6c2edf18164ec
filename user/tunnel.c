// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Established tunnels: the hand-off, the choice of relay, the reset drain, the watch
 * list and the teardown. The relays (kernel_relay.c, splice_relay.c) move the bytes
 * and report what they need through enum relay_step; only this file closes the
 * connection for them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include "conn.h"
#include "kernel_relay.h"
#include "log.h"
#include "relay.h"
#include "splice_relay.h"
#include "tunnel.h"

#define HANDOFF_MAX_BYTES (1024 * 1024) /* moved by the daemon before a kernel relay */
#define WATCH_MAX_BACKOFF_MS 16
#define RESET_DRAIN_MS 5000 /* a reset tunnel delivers what it accepted within this */

const char *relay_kind_name(enum relay_kind k)
{
	return k == RK_SOCKMAP ? "sockmap" : k == RK_SPLICE ? "splice" : "-";
}

void tunnels_set_bounds(struct tunnels *ts, const struct config *cfg)
{
	ts->max_backlog = cfg->max_backlog_bytes;
	if (ts->relay) {
		relay_set_max_backlog(ts->relay, cfg->max_backlog_bytes);
		relay_set_bufs(ts->relay, cfg->relay_sndbuf_bytes, cfg->relay_rcvbuf_bytes);
	}
}

void tunnel_counters(const struct tunnel *t, struct tunnel_counts *n)
{
	*n = (struct tunnel_counts){
		.up = t->handoff[TG_DIR_UP] + t->spliced[TG_DIR_UP],
		.down = t->handoff[TG_DIR_DOWN] + t->spliced[TG_DIR_DOWN],
		.idle_ms = now_ms() - t->last_ms,
	};
	if (t->kind == RK_SOCKMAP)
		kernel_relay_counters(t, n);
}

static void watch_unlink(struct tunnel *t)
{
	struct tunnel **pp;

	if (!t->watched)
		return;
	for (pp = &t->set->watch; *pp; pp = &(*pp)->watch_next)
		if (*pp == t) {
			*pp = t->watch_next;
			break;
		}
	t->watched = false;
}

static void watch(struct tunnel *t, bool soon)
{
	if (!t->watched) {
		t->watched = true;
		t->watch_next = t->set->watch;
		t->set->watch = t;
		t->watch_backoff_ms = 1;
	} else if (soon) {
		t->watch_backoff_ms = 1;
	} else if (t->watch_backoff_ms < WATCH_MAX_BACKOFF_MS) {
		t->watch_backoff_ms *= 2;
	}
	t->watch_at_ms = now_ms() + t->watch_backoff_ms;
}

/* conn_close() calls this first: log and count the tunnel, let go of its sockets. */
static void teardown(struct conn *c)
{
	struct tunnel *t = c->tun;
	struct relay_stats *s = &t->set->stats;
	struct tunnel_counts n;

	if (t->closing)
		return;
	t->closing = true;
	tunnel_counters(t, &n);
	s->bytes_up += n.up;
	s->bytes_down += n.down;
	if (t->kind == RK_SOCKMAP) {
		s->bytes_copied += n.copied_up + n.copied_down;
		s->bytes_kernel += n.up + n.down - n.copied_up - n.copied_down;
	}
	tunnel_split_bytes(t->kind, &n, &s->paths);
	hist_observe(&s->duration, &hist_tunnel, (now_ms() - t->start_ms) * 1000);
	conn_log(c, "tunnel closed", relay_kind_name(t->kind),
		 &(struct conn_bytes){ .up = n.up, .down = n.down, .copied_up = n.copied_up,
				       .copied_down = n.copied_down });
	watch_unlink(t);
	if (t->kind == RK_SOCKMAP)
		kernel_relay_stop(t);
	splice_relay_stop(t);
	t->set->open--;
}

/*
 * One step of a reset: once everything the gateway accepted from the reset side is in
 * the other side's socket and acknowledged, or RESET_DRAIN_MS is over, reset the other
 * side too. Returns true when the tunnel is closed.
 */
static bool reset_drain(struct tunnel *t)
{
	int d = t->fail_dir, outq = 0;
	int done = t->kind == RK_SPLICE ? splice_relay_drain_reset(t, d) :
					  kernel_relay_drain_reset(t, d);

	if (done > 0 && (ioctl(dir_dst(t, d), SIOCOUTQ, &outq) || outq > 0))
		done = 0;
	if (done || now_ms() >= t->rst_deadline_ms) {
		if (!done)
			pr_debug("tunnel %llu: the peer of the reset side took not all bytes within "
				 "%d ms", (unsigned long long)t->id, RESET_DRAIN_MS);
		conn_reset(t->conn, t->fail_why);
		return true;
	}
	return false;
}

/*
 * The source of direction t->fail_dir was reset or failed. Its peer first gets every
 * byte the gateway had accepted from it, then a reset too: a truncated stream must
 * never look like a clean end.
 */
static void reset_from(struct tunnel *t)
{
	int d = t->fail_dir;

	if (t->rst)
		return;
	t->rst = true;
	conn_set_end(t->conn, END_RESET, NULL);
	t->rst_deadline_ms = now_ms() + RESET_DRAIN_MS;
	pr_debug("tunnel %llu: %s reset (%s): delivering what it sent, then resetting the %s",
		 (unsigned long long)t->id, d == TG_DIR_UP ? "client" : "upstream", t->fail_why,
		 d == TG_DIR_UP ? "upstream" : "client");
	ev_del(t->h[TG_DIR_UP]);
	ev_del(t->h[TG_DIR_DOWN]);
	if (!reset_drain(t))
		watch(t, true);
}

/* Do what a relay step asks for. */
static void apply(struct tunnel *t, enum relay_step step, bool soon)
{
	switch (step) {
	case RELAY_IDLE:
		break;
	case RELAY_POLL:
		watch(t, soon);
		break;
	case RELAY_DONE:
		/* Both FINs came: the log names the side that sent the first. */
		conn_set_end(t->conn, t->fin_seen && t->fin_first == TG_DIR_DOWN ?
				      END_UPSTREAM_FIN : END_CLIENT_FIN, NULL);
		conn_close(t->conn, NULL);
		break;
	case RELAY_FAIL:
		conn_set_end(t->conn, END_RESET, NULL);
		conn_reset(t->conn, t->fail_why);
		break;
	case RELAY_PEER_RESET:
		reset_from(t);
		break;
	}
}

int tunnel_watch_poll(struct tunnels *ts)
{
	uint64_t now = now_ms();
	struct tunnel *t, *next;
	int wait = -1;

	for (t = ts->watch; t; t = next) {
		next = t->watch_next;
		if (t->watch_at_ms <= now) {
			if (t->rst) {
				if (!reset_drain(t))
					watch(t, false);
			} else {
				enum relay_step step = kernel_relay_check(t);

				if (step == RELAY_IDLE)
					watch_unlink(t);
				/* Redirected bytes ahead of held ones drain fast; a FIN can wait. */
				apply(t, step, t->kd[0].wait || t->kd[1].wait);
			}
			if (!t->watched)
				continue;
		}
		if (wait < 0 || (int)(t->watch_at_ms - now) < wait)
			wait = t->watch_at_ms > now ? t->watch_at_ms - now : 0;
	}
	return wait;
}

void tunnel_event(struct conn *c, struct handle *h, uint32_t events)
{
	struct tunnel *t = c->tun;
	int d = h == t->h[TG_DIR_UP] ? TG_DIR_UP : TG_DIR_DOWN;

	if (t->rst) { /* from this batch, before the sockets left epoll */
		if (!reset_drain(t))
			watch(t, false);
		return;
	}
	if (t->kind == RK_SOCKMAP) {
		apply(t, kernel_relay_event(t, d, events), true);
		return;
	}
	if (events & EPOLLERR) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		t->fail_dir = d;
		t->fail_why = err ? strerror(err) : "socket error";
		apply(t, RELAY_PEER_RESET, true);
		return;
	}
	apply(t, splice_relay_event(t), true);
}

static uint64_t tunnel_ids; /* the last id given, every worker's */

/* Start relaying: the kernel relay if it is on and takes the tunnel, else splice. */
static void tunnel_start(struct conn *c)
{
	struct tunnel *t = c->tun;
	struct tunnels *ts = t->set;
	int err;

	/* One sequence for every worker: ids stay unique in the relay's maps and the CLI. */
	t->id = __atomic_add_fetch(&tunnel_ids, 1, __ATOMIC_RELAXED);
	c->state = CS_TUNNEL;
	c->deadline_ms = 0;
	c->teardown = teardown;
	t->start_ms = t->last_ms = now_ms();
	free(c->cbuf);
	c->cbuf = NULL;
	c->clen = c->ccap = 0;
	free(c->ubuf);
	c->ubuf = NULL;
	free(c->req);
	c->req = NULL;
	free(c->resp);
	c->resp = NULL;
	ts->open++;
	ts->stats.tunnels_total++;

	if (ts->default_kind == RK_SOCKMAP && !t->queues_unread) {
		err = kernel_relay_start(t, &c->caddr, c->crecvd, c->urecvd);
		if (!err) {
			t->kind = RK_SOCKMAP;
			ts->stats.tunnels_sockmap++;
			pr_debug("tunnel %llu %s -> %s (%s): kernel relay",
				 (unsigned long long)t->id, c->cname, c->uname, c->target);
			return;
		}
		/* E.g. a side already sent its FIN: the sockhash only takes established sockets. */
		pr_debug("tunnel %llu: kernel relay refused it (%s), relaying with splice",
			 (unsigned long long)t->id, strerror(-err));
	}
	t->kind = RK_SPLICE;
	err = splice_relay_start(t);
	if (err) {
		pr_warn("tunnel %llu: cannot create relay pipes: %s (raise the fd limit)",
			(unsigned long long)t->id, strerror(-err));
		conn_set_end(c, END_ERROR, "no_relay_pipes");
		conn_close(c, "no relay");
		return;
	}
	ts->stats.tunnels_splice++;
	pr_debug("tunnel %llu %s -> %s (%s): splice relay", (unsigned long long)t->id,
		 c->cname, c->uname, c->target);
	/* Bytes may already wait in the receive queues. */
	apply(t, splice_relay_event(t), true);
}

/*
 * Move what waits unread in the sockets' receive queues to the other side's buffer.
 * The kernel relay takes whole skbs from a receive queue, bytes the daemon already
 * read from them included, so a socket may join the sockhash only when nothing is
 * left unread: else those bytes would be sent twice. Returns bytes moved or -errno.
 */
static ssize_t handoff_drain(struct conn *c)
{
	struct tunnel *t = c->tun;
	char buf[65536];
	ssize_t moved = 0;

	for (int d = 0; d < 2; d++) {
		int fd = dir_src(t, d), inq = 0;
		struct obuf *out = d == TG_DIR_UP ? &c->to_up : &c->to_client;
		ssize_t n;

		if (ioctl(fd, SIOCINQ, &inq) || inq <= 0)
			continue;
		n = recv(fd, buf, (size_t)inq < sizeof(buf) ? (size_t)inq : sizeof(buf),
			 MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		if (obuf_put(out, buf, n))
			return -ENOMEM;
		if (d == TG_DIR_UP)
			c->crecvd += n;
		else
			c->urecvd += n;
		t->handoff[d] += n;
		moved += n;
	}
	return moved;
}

void tunnel_handoff_event(struct conn *c)
{
	struct tunnel *t = c->tun;

	for (;;) {
		int e1 = obuf_flush(&c->to_client, c->ch.fd);
		int e2 = obuf_flush(&c->to_up, c->uh.fd);
		ssize_t moved;

		if ((e1 && e1 != -EAGAIN) || (e2 && e2 != -EAGAIN)) {
			conn_close(c, "peer closed during hand-off");
			return;
		}
		if (e1 || e2)
			return;
		/* A sender that keeps the queue busy goes to the splice relay instead. */
		if (t->handoff[TG_DIR_UP] + t->handoff[TG_DIR_DOWN] >= HANDOFF_MAX_BYTES) {
			t->queues_unread = true;
			break;
		}
		moved = handoff_drain(c);
		if (moved < 0) {
			conn_close(c, "peer failed during hand-off");
			return;
		}
		if (!moved)
			break;
	}
	obuf_free(&c->to_client);
	obuf_free(&c->to_up);
	tunnel_start(c);
}

void tunnel_handoff(struct conn *c)
{
	size_t tail = c->clen - c->req_len;
	struct tunnel *t = calloc(1, sizeof(*t));

	if (!t || (tail && obuf_put(&c->to_up, c->cbuf + c->req_len, tail))) {
		free(t);
		conn_close(c, "out of memory");
		return;
	}
	t->conn = c;
	t->set = &c->gw->tunnels;
	t->h[TG_DIR_UP] = &c->ch;
	t->h[TG_DIR_DOWN] = &c->uh;
	for (int d = 0; d < 2; d++)
		t->sdir[d].pipe[0] = t->sdir[d].pipe[1] = -1;
	/* Bytes past the heads: the client's after its CONNECT, the upstream's after its 2xx. */
	t->handoff[TG_DIR_UP] = tail;
	t->handoff[TG_DIR_DOWN] = c->body_down;
	c->tun = t;
	c->state = CS_HANDOFF;
	c->deadline_ms = 0;
	tunnel_handoff_event(c);
}
