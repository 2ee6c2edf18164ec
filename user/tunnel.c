// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Relaying an established tunnel: in the kernel (sockhash + verdict program) or with
 * splice() through a pipe per direction.
 *
 * The kernel relay never shows tunnel bytes to the daemon, but a peer's FIN does show
 * (EPOLLRDHUP). The FIN must reach the other side only after every byte before it:
 * redirected bytes wait in a kernel queue until the peer's send path takes them, so
 * the daemon checks, from the BPF byte counters and the two sockets' TCP state, that
 * everything the FIN follows has entered the peer socket before shutdown(SHUT_WR).
 *
 * When a peer lags, the sockops program pauses the direction (pause = sockops, see
 * bpf/relay.bpf.c): it takes the source socket out of `ingress`, new bytes wait in its
 * TCP receive queue, and the socket turns readable. The daemon puts it back once the
 * peer is writable again and has taken every redirected byte. A paused socket that
 * can no longer rejoin (it is not established any more: a FIN came, or its own write
 * side was shut) has the rest of its stream copied by the daemon (the tail).
 *
 * Past what the peer can take at all, and always with pause = hold, the verdict
 * program holds bytes on their own socket instead, and the socket turns readable. The
 * daemon waits until the peer has taken every redirected byte, then copies the held
 * bytes itself and releases them; the kernel relays again after that.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "gateway.h"
#include "log.h"
#include "tunnel.h"

#define SPLICE_PIPE_BYTES (256 * 1024)
#define SPLICE_ROUNDS 16
#define WATCH_MAX_BACKOFF_MS 16
#define HOLD_BUF_BYTES (4096 * 1024) /* held bytes read per round, at most; see hold_cap() */
#define HOLD_ROUNDS 8 /* reads per event, then the other connections get a turn */
#define STUCK_FLOOR_BYTES (256ull << 20) /* see kdir_stuck_check() */
#define RESET_DRAIN_MS 5000 /* a reset tunnel delivers what it accepted within this */

/* TCP states as tcp_info reports them (include/net/tcp_states.h). */
enum { TCPS_TIME_WAIT = 6, TCPS_CLOSE = 7, TCPS_CLOSE_WAIT = 8, TCPS_LAST_ACK = 9, TCPS_CLOSING = 11 };

static void tunnel_reset_from(struct conn *c, int d, const char *why);
static void watch(struct conn *c, bool soon);

static int dir_src(struct conn *c, int d)
{
	return d == TG_DIR_UP ? c->ch.fd : c->uh.fd;
}

static int dir_dst(struct conn *c, int d)
{
	return d == TG_DIR_UP ? c->uh.fd : c->ch.fd;
}

static int tcp_info_get(int fd, struct tcp_info *ti)
{
	socklen_t len = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) ? -errno : 0;
}

/* Bytes ever written into @fd's send queue: acked + still queued. Read acked first. */
static int sent_total(int fd, uint64_t *out)
{
	struct tcp_info ti;
	int outq = 0;

	if (tcp_info_get(fd, &ti) || ioctl(fd, SIOCOUTQ, &outq))
		return -errno;
	*out = ti.tcpi_bytes_acked + (uint64_t)outq;
	return 0;
}

static bool fin_received(uint8_t state)
{
	return state == TCPS_CLOSE_WAIT || state == TCPS_LAST_ACK || state == TCPS_CLOSING ||
	       state == TCPS_TIME_WAIT;
}

static void addr16(const struct sockaddr_any *a, __u8 out[16], __be16 *port)
{
	sockaddr_ip16(a, out);
	if (a->sa.sa_family == AF_INET)
		*port = a->in.sin_port;
	else if (a->sa.sa_family == AF_INET6)
		*port = a->in6.sin6_port;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int sockmap_start(struct conn *c)
{
	struct sockaddr_any ua = { .len = sizeof(ua.ss) };
	struct tg_tunnel t = {
		.id = c->tunnel_id,
		.bytes_up = c->bytes_up,
		.bytes_down = c->bytes_down,
		.copied_up = c->bytes_up, /* forwarded by the daemon before the hand-off */
		.copied_down = c->bytes_down,
		.start_ns = now_ns(),
	};
	int err;

	t.last_ns = t.start_ns;
	getpeername(c->uh.fd, &ua.sa, &ua.len);
	addr16(&c->caddr, t.client_addr, &t.client_port);
	addr16(&ua, t.upstream_addr, &t.upstream_port);
	c->kd[TG_DIR_UP] = (struct kdir){ .read_before = c->crecvd };
	c->kd[TG_DIR_DOWN] = (struct kdir){ .read_before = c->urecvd };
	if (sent_total(c->uh.fd, &c->kd[TG_DIR_UP].peer_base) ||
	    sent_total(c->ch.fd, &c->kd[TG_DIR_DOWN].peer_base))
		return -errno;
	err = relay_add(c->gw->relay, &t, c->ch.fd, c->uh.fd, c->cookie);
	if (err)
		return err;
	gw_set_events(c->gw, &c->ch, EPOLLIN | EPOLLRDHUP);
	gw_set_events(c->gw, &c->uh, EPOLLIN | EPOLLRDHUP);
	return 0;
}

static void splice_events(struct conn *c)
{
	struct splice_dir *up = &c->sdir[TG_DIR_UP], *down = &c->sdir[TG_DIR_DOWN];
	uint32_t ce = 0, ue = 0;

	if (!up->eof && up->in_pipe < SPLICE_PIPE_BYTES)
		ce |= EPOLLIN;
	if (!down->eof && down->in_pipe < SPLICE_PIPE_BYTES)
		ue |= EPOLLIN;
	if (up->in_pipe)
		ue |= EPOLLOUT;
	if (down->in_pipe)
		ce |= EPOLLOUT;
	gw_set_events(c->gw, &c->ch, ce);
	gw_set_events(c->gw, &c->uh, ue);
}

static int splice_start(struct conn *c)
{
	for (int d = 0; d < 2; d++) {
		if (pipe2(c->sdir[d].pipe, O_NONBLOCK | O_CLOEXEC))
			return -errno;
		fcntl(c->sdir[d].pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES);
	}
	splice_events(c);
	return 0;
}

/* Close with an RST on both sides: the stream is incomplete and must not look ended. */
static void conn_reset(struct conn *c, const char *why)
{
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->ch.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	setsockopt(c->uh.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	conn_close(c, why);
}

static void watch_unlink(struct conn *c)
{
	struct conn **pp;

	if (!c->watched)
		return;
	for (pp = &c->gw->watch; *pp; pp = &(*pp)->watch_next)
		if (*pp == c) {
			*pp = c->watch_next;
			break;
		}
	c->watched = false;
}

void tunnel_start(struct conn *c)
{
	struct gateway *gw = c->gw;
	int err = -EOPNOTSUPP;

	c->tunnel_id = ++gw->next_tunnel_id;
	c->state = CS_TUNNEL;
	c->deadline_ms = 0;
	c->tunnel_start_ms = c->last_ms = now_ms();
	free(c->cbuf);
	c->cbuf = NULL;
	c->clen = c->ccap = 0;
	free(c->ubuf);
	c->ubuf = NULL;
	free(c->req);
	c->req = NULL;
	free(c->resp);
	c->resp = NULL;
	gw->ntunnels++;
	gw->stats.tunnels_total++;

	if (gw->default_relay == RK_SOCKMAP && !c->queues_unread) {
		err = sockmap_start(c);
		if (!err) {
			c->relay = RK_SOCKMAP;
			gw->stats.tunnels_sockmap++;
			pr_debug("tunnel %llu %s -> %s (%s): kernel relay",
				 (unsigned long long)c->tunnel_id, c->cname, c->uname, c->target);
			return;
		}
		/* E.g. a side already sent its FIN: the sockhash only takes established sockets. */
		pr_debug("tunnel %llu: kernel relay refused it (%s), relaying with splice",
			 (unsigned long long)c->tunnel_id, strerror(-err));
	}
	err = splice_start(c);
	if (err) {
		pr_warn("tunnel %llu: cannot create relay pipes: %s (raise the fd limit)",
			(unsigned long long)c->tunnel_id, strerror(-err));
		conn_close(c, "no relay");
		return;
	}
	c->relay = RK_SPLICE;
	gw->stats.tunnels_splice++;
	pr_debug("tunnel %llu %s -> %s (%s): splice relay", (unsigned long long)c->tunnel_id,
		 c->cname, c->uname, c->target);
	/* Bytes may already wait in the receive queues. */
	tunnel_event(c, &c->ch, EPOLLIN);
}

const char *relay_kind_name(enum relay_kind k)
{
	return k == RK_SOCKMAP ? "sockmap" : k == RK_SPLICE ? "splice" : "-";
}

void tunnel_counters(struct conn *c, struct tunnel_counts *n)
{
	struct tg_tunnel t;

	*n = (struct tunnel_counts){ .up = c->bytes_up, .down = c->bytes_down,
				     .idle_ms = now_ms() - c->last_ms };
	if (c->relay != RK_SOCKMAP || relay_read(c->gw->relay, c->tunnel_id, &t))
		return;
	n->up = t.bytes_up;
	n->down = t.bytes_down;
	n->copied_up = t.copied_up;
	n->copied_down = t.copied_down;
	if ((now_ns() - t.last_ns) / 1000000 < n->idle_ms)
		n->idle_ms = (now_ns() - t.last_ns) / 1000000;
}

void tunnel_teardown(struct conn *c)
{
	struct gateway *gw = c->gw;
	struct tunnel_counts n;

	tunnel_counters(c, &n);
	c->bytes_up = n.up;
	c->bytes_down = n.down;
	gw->stats.bytes_up += n.up;
	gw->stats.bytes_down += n.down;
	if (c->relay == RK_SOCKMAP) {
		gw->stats.bytes_copied += n.copied_up + n.copied_down;
		gw->stats.bytes_kernel += n.up + n.down - n.copied_up - n.copied_down;
	}
	conn_log(c, "tunnel closed");
	watch_unlink(c);
	for (int d = 0; d < 2; d++) {
		free(c->kd[d].hold_buf);
		c->kd[d].hold_buf = NULL;
	}
	if (c->relay == RK_SOCKMAP) {
		relay_remove(gw->relay, c->tunnel_id, c->cookie, true);
		for (int d = 0; d < 2; d++)
			if (c->kd[d].release_sent)
				relay_release_clear(gw->relay, c->cookie[d]);
	}
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < 2; i++)
			if (c->sdir[d].pipe[i] >= 0) {
				close(c->sdir[d].pipe[i]);
				c->sdir[d].pipe[i] = -1;
			}
	gw->ntunnels--;
	c->state = CS_HANDOFF; /* not a tunnel any more: conn_close must not come back */
}

/* Take @h out of epoll (a socket in error reports EPOLLERR whatever the mask). */
static void unwatch_fd(struct conn *c, struct handle *h)
{
	if (h->in_epoll) {
		epoll_ctl(c->gw->epfd, EPOLL_CTL_DEL, h->fd, NULL);
		h->in_epoll = false;
		h->events = 0;
	}
}

/* A socket we need nothing more from (read side ended, write side shut) leaves epoll. */
static void drop_if_done(struct conn *c, struct handle *h, bool read_done, bool write_done)
{
	if (read_done && write_done)
		unwatch_fd(c, h);
}

/*
 * Move what can be moved in direction @d. Returns 0, or -errno on a socket error with
 * the direction whose source failed in @failed (a destination is the other one's source).
 */
static int splice_pump(struct conn *c, int d, int *failed)
{
	struct splice_dir *s = &c->sdir[d];
	int src = dir_src(c, d), dst = dir_dst(c, d);

	for (int i = 0; i < SPLICE_ROUNDS; i++) {
		bool moved = false;
		ssize_t n;

		if (!s->eof && s->in_pipe < SPLICE_PIPE_BYTES) {
			n = splice(src, NULL, s->pipe[1], NULL, SPLICE_PIPE_BYTES - s->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				s->in_pipe += n;
				moved = true;
			} else if (n == 0) {
				s->eof = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				*failed = d;
				return -errno;
			}
		}
		if (s->in_pipe) {
			n = splice(s->pipe[0], NULL, dst, NULL, s->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				s->in_pipe -= n;
				if (d == TG_DIR_UP)
					c->bytes_up += n;
				else
					c->bytes_down += n;
				c->last_ms = now_ms();
				moved = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				*failed = !d;
				return -errno;
			}
		}
		if (!moved)
			break;
	}
	if (s->eof && !s->in_pipe && !s->shut && !c->rst) {
		shutdown(dst, SHUT_WR);
		s->shut = true;
	}
	return 0;
}

static void splice_event(struct conn *c)
{
	int err, failed;

	for (int d = 0; d < 2; d++) {
		err = splice_pump(c, d, &failed);
		if (err) {
			tunnel_reset_from(c, failed, strerror(-err));
			return;
		}
	}
	if (c->sdir[0].shut && c->sdir[1].shut) {
		conn_close(c, NULL);
		return;
	}
	splice_events(c);
	drop_if_done(c, &c->ch, c->sdir[TG_DIR_UP].eof, c->sdir[TG_DIR_DOWN].shut);
	drop_if_done(c, &c->uh, c->sdir[TG_DIR_DOWN].eof, c->sdir[TG_DIR_UP].shut);
}

/*
 * Bytes of direction @d that entered the relay (redirected by the kernel, or held and
 * then written by the daemon) and that the peer's send path has not taken yet.
 */
static int kdir_backlog(struct conn *c, int d, struct tg_end *e, uint64_t *backlog)
{
	struct kdir *k = &c->kd[d];
	uint64_t sent, in;
	int err;

	err = relay_read_end(c->gw->relay, c->cookie[d], e);
	if (!err)
		err = sent_total(dir_dst(c, d), &sent);
	if (err)
		return err;
	sent -= k->peer_base;
	in = e->relayed + k->released + k->tail_copied;
	*backlog = in > sent ? in - sent : 0;
	return 0;
}

/* Write held bytes read earlier; true when none are left. -errno on a socket error. */
static int hold_flush(struct conn *c, int d)
{
	struct kdir *k = &c->kd[d];
	uint64_t sent = 0;
	int rc = 1;

	while (k->hold_off < k->hold_len) {
		ssize_t n = send(dir_dst(c, d), k->hold_buf + k->hold_off, k->hold_len - k->hold_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			rc = errno == EAGAIN || errno == EINTR ? 0 : -errno;
			break;
		}
		k->hold_off += n;
		sent += n;
	}
	if (k->tail)
		k->tail_copied += sent;
	else
		k->released += sent;
	/* The tunnel's counters in the map count what the daemon copied too. */
	if (sent)
		relay_count_copy(c->gw->relay, c->tunnel_id, d, sent);
	if (rc == 1)
		k->hold_off = k->hold_len = 0;
	return rc;
}

/*
 * Held bytes that are not readable yet wait in the kernel queue of the source socket
 * behind the other direction's bytes, where no socket buffer accounts for them and
 * the source's TCP window stays open. The verdict program redirects only into free
 * send-buffer space, so that queue empties at once and this stays near zero (0-1 MiB
 * measured); should it not, past 64 x max_backlog_bytes and 256 MiB the tunnel is
 * reset, so one tunnel cannot take the host's memory. Checked only while the
 * direction waits (polled), not on every event. Returns 0 or -ENOBUFS.
 */
static int kdir_stuck_check(struct conn *c, int d)
{
	struct kdir *k = &c->kd[d];
	uint64_t taken = k->released + (k->hold_len - k->hold_off); /* read by the daemon */
	uint64_t limit = 64 * c->cfg->max_backlog_bytes, stuck;
	struct tg_end e;
	int inq = 0;

	/* SIOCINQ first: held bytes that arrive meanwhile count in e.held, not in inq. */
	if (ioctl(dir_src(c, d), SIOCINQ, &inq) || inq < 0 ||
	    relay_read_end(c->gw->relay, c->cookie[d], &e))
		return 0;
	if (e.held <= taken + (uint64_t)inq)
		return 0;
	stuck = e.held - taken - (uint64_t)inq;
	if (stuck > k->stuck_max)
		k->stuck_max = stuck;
	if (stuck <= limit || stuck <= STUCK_FLOOR_BYTES)
		return 0;
	pr_warn("tunnel %llu: both ends keep sending and neither reads: %llu bytes wait in "
		"the kernel queue outside any socket buffer (over 64 x max_backlog_bytes and "
		"256 MiB); resetting the tunnel", (unsigned long long)c->tunnel_id,
		(unsigned long long)stuck);
	return -ENOBUFS;
}

/*
 * Held bytes read per round: 4 MiB, but no more than max_backlog_bytes. Whatever the
 * peer does not take stays in the daemon until it turns writable, outside any socket
 * buffer, so this counts against the same bound as the kernel backlog (the two never
 * hold bytes at once: the daemon reads only when the backlog is 0, and the program
 * redirects nothing while held bytes are out).
 */
static size_t hold_cap(const struct conn *c)
{
	uint64_t b = c->cfg->max_backlog_bytes;

	return b < HOLD_BUF_BYTES ? (size_t)b : HOLD_BUF_BYTES;
}

/*
 * Direction @d holds bytes on its source socket. Once the peer has taken every byte
 * before them, copy them over and release them. Returns -errno on a socket error.
 */
static int kdir_release(struct conn *c, int d)
{
	struct kdir *k = &c->kd[d];
	uint64_t backlog;
	struct tg_end e;
	size_t cap = hold_cap(c);
	int err = 0, inq = 0;

	if (kdir_backlog(c, d, &e, &backlog))
		return 0;
	k->wait = backlog && !k->hold_len;
	if (k->wait)
		return kdir_stuck_check(c, d); /* redirected bytes first */
	if (!k->hold_buf) {
		k->hold_buf = malloc(cap);
		if (!k->hold_buf)
			return -ENOMEM;
	}
	for (int i = 0; i < HOLD_ROUNDS; i++) {
		ssize_t n;

		err = hold_flush(c, d);
		if (err <= 0)
			break;
		err = 0;
		/*
		 * Read only what the program held: on a sockhash socket SIOCINQ counts the
		 * held queue, and a longer read would take bytes the verdict program has
		 * not seen yet off the TCP queue (it then relays the rest of that skb
		 * whole: bytes twice). Held bytes may also still wait in the kernel queue
		 * behind the other direction's, so nothing here means "all out".
		 */
		if (ioctl(dir_src(c, d), SIOCINQ, &inq) || inq <= 0)
			break;
		n = recv(dir_src(c, d), k->hold_buf,
			 (size_t)inq < cap ? (size_t)inq : cap, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
			break;
		if (n < 0) {
			err = -errno;
			break;
		}
		k->hold_len = n;
		c->last_ms = now_ms();
	}
	if (k->released != k->release_sent) {
		if (relay_release(c->gw->relay, c->cookie[d], k->released))
			return -EIO;
		k->release_sent = k->released;
	}
	if (err < 0)
		return err;
	/* Done when every byte the program held has been written to the peer. */
	if (!k->hold_len && !relay_read_end(c->gw->relay, c->cookie[d], &e)) {
		if (e.held == k->released) {
			k->holding = false;
			free(k->hold_buf);
			k->hold_buf = NULL;
		} else if (inq <= 0 && (ioctl(dir_src(c, d), SIOCINQ, &inq) || inq <= 0)) {
			k->wait = true; /* held, but not readable yet */
			return kdir_stuck_check(c, d);
		}
	}
	return 0;
}

/*
 * Copy what the source of direction @d still has to its peer, to the end of the stream:
 * the tail of a paused direction whose socket cannot rejoin `ingress` (every byte
 * redirected or held before the pause is in the peer already, the rest is plain TCP
 * data in the receive queue), or the rest of a reset socket (@dead: nothing more will
 * come, so an error or an empty queue ends it too). Held bytes read earlier go first.
 * Returns 0, or -errno on a socket error.
 */
static int kdir_copy_rest(struct conn *c, int d, bool dead)
{
	struct kdir *k = &c->kd[d];
	size_t cap = hold_cap(c);
	int err;

	if (!k->tail && k->hold_len) {
		err = hold_flush(c, d);
		if (err <= 0)
			return err;
	}
	k->tail = true;
	if (!k->hold_buf && !(k->hold_buf = malloc(cap)))
		return -ENOMEM;
	for (int i = 0; i < HOLD_ROUNDS && !k->tail_eof; i++) {
		ssize_t n;

		err = hold_flush(c, d);
		if (err <= 0)
			return err;
		n = recv(dir_src(c, d), k->hold_buf, cap, MSG_DONTWAIT);
		if (n > 0) {
			k->hold_len = n;
			c->last_ms = now_ms();
			continue;
		}
		if (n == 0 || dead) {
			k->tail_eof = k->eof = true;
			break;
		}
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
	err = hold_flush(c, d);
	return err < 0 ? err : 0;
}

/*
 * Direction @d is paused. Put its source back under the verdict program once the peer
 * has taken all but a quarter of max_backlog_bytes of the redirected bytes and is
 * writable again (the kernel's own mark: a third of its send buffer free); a source
 * that cannot rejoin goes to the tail. The program pauses a socket only when all its
 * held bytes are released, and they are read only while it is under the program
 * again (see pause_now() in bpf/relay.bpf.c). Returns
 * -errno on a socket error, -EPROTO if held bytes are left on a socket that cannot
 * rejoin (they cannot be read in order).
 */
static int kdir_resume(struct conn *c, int d)
{
	struct pollfd pfd = { .fd = dir_dst(c, d), .events = POLLOUT };
	struct kdir *k = &c->kd[d];
	uint64_t backlog;
	struct tg_end e;
	int err;

	if (k->tail)
		return kdir_copy_rest(c, d, false);
	if (kdir_backlog(c, d, &e, &backlog))
		return 0;
	/* Redirected bytes still queued are fine: resumed bytes queue behind them. */
	k->wait = backlog > c->cfg->max_backlog_bytes / 4;
	if (k->wait || poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT))
		return 0;
	err = relay_resume(c->gw->relay, c->cookie[d], dir_src(c, d));
	if (err) {
		/* Not established any more (a FIN came, or this side was shut). */
		pr_debug("tunnel %llu dir %d: cannot rejoin the kernel relay (%s): the daemon "
			 "copies the rest", (unsigned long long)c->tunnel_id, d, strerror(-err));
		if (e.held != k->released)
			return -EPROTO;
		return kdir_copy_rest(c, d, false);
	}
	k->resumes = e.pauses;
	k->paused = false;
	return 0;
}

/*
 * Direction @d has seen its FIN. 1 once every byte that came before it is in the
 * peer's send queue, so the FIN can follow; 0 while some are not; -EPROTO if the
 * program had to drop bytes (see `lost` in struct tg_end): the stream has a gap.
 */
static int kdir_drained(struct conn *c, int d)
{
	struct kdir *k = &c->kd[d];
	uint64_t backlog;
	struct tg_end e;
	int64_t arrived;

	if (k->paused) /* kdir_resume() either resumes it or copies the tail */
		return k->tail_eof && !k->hold_len;
	if (k->holding)
		return 0;
	if (kdir_backlog(c, d, &e, &backlog))
		return 0;
	if (e.lost)
		return -EPROTO;
	/* Held since the last look (or on their way when the FIN came): release them first. */
	if (e.held != k->released) {
		k->holding = true;
		c->gw->stats.holds++;
		return 0;
	}
	/* Bytes that reached the source socket after the hand-off (the FIN counts one). */
	arrived = (int64_t)k->fin_received - 1 - (int64_t)k->read_before;
	pr_debug("tunnel %llu dir %d: arrived %lld relayed %llu held %llu released %llu backlog %llu "
		 "peak %llu retransmitted-twice %llu stuck-max %llu", (unsigned long long)c->tunnel_id,
		 d, (long long)arrived, (unsigned long long)e.relayed, (unsigned long long)e.held,
		 (unsigned long long)k->released, (unsigned long long)backlog,
		 (unsigned long long)e.peak, (unsigned long long)e.trimmed,
		 (unsigned long long)k->stuck_max);
	/* Fewer seen than arrived: the verdict program has not run on the last bytes yet. */
	return (int64_t)(e.relayed + e.held) >= arrived && !backlog;
}

/*
 * The epoll interest of both relay sockets. A source is watched for readability while
 * its direction relays in the kernel (held bytes, a pause or a FIN turn it readable),
 * while held bytes wait to be read, and in the tail; a destination for writability
 * while bytes read from the other side wait to be written into it, and while the other
 * side is paused (writable again is the signal to resume).
 */
static void kdir_events(struct conn *c)
{
	for (int d = 0; d < 2; d++) {
		struct kdir *k = &c->kd[d], *o = &c->kd[!d];
		struct handle *h = d == TG_DIR_UP ? &c->ch : &c->uh; /* d's source, !d's dest. */
		uint32_t ev = 0;

		if (h->fd < 0)
			continue;
		if (k->tail) {
			if (!k->tail_eof && !k->hold_len)
				ev |= EPOLLIN;
		} else if (!k->eof) {
			ev |= EPOLLRDHUP;
			/* A paused source is readable as long as its receive queue holds bytes. */
			if (!k->paused && (!k->holding || (!k->hold_len && !k->wait)))
				ev |= EPOLLIN;
		}
		if (o->hold_len || (o->paused && !o->wait && !o->tail))
			ev |= EPOLLOUT;
		gw_set_events(c->gw, h, ev);
	}
}

/* Work on held bytes and FIN hand-overs of @c; returns true if it needs no more watching. */
static bool kdir_check(struct conn *c)
{
	int err;

	for (int d = 0; d < 2; d++) {
		struct kdir *k = &c->kd[d];
		bool again;

		do { /* twice at most: when the FIN check finds held bytes, release them now */
			bool was_holding = k->holding;

			again = false;
			if (k->paused) {
				err = kdir_resume(c, d);
				if (err) {
					conn_reset(c, strerror(-err));
					return true;
				}
			}
			if (k->holding && !k->paused) {
				err = kdir_release(c, d);
				if (err) {
					conn_reset(c, strerror(-err));
					return true;
				}
			}
			if (!k->eof || k->shut)
				break;
			err = kdir_drained(c, d);
			if (err < 0) {
				pr_warn("tunnel %llu: the kernel relay dropped bytes of a retransmission "
					"it could not trim; resetting the tunnel so the loss cannot look "
					"like a clean end", (unsigned long long)c->tunnel_id);
				conn_reset(c, "bytes lost in the kernel relay");
				return true;
			}
			if (err) {
				shutdown(dir_dst(c, d), SHUT_WR);
				k->shut = true;
			}
			again = !was_holding && k->holding;
		} while (again);
	}
	if (c->kd[0].shut && c->kd[1].shut) {
		conn_close(c, NULL);
		return true;
	}
	drop_if_done(c, &c->ch, c->kd[TG_DIR_UP].eof, c->kd[TG_DIR_DOWN].shut);
	drop_if_done(c, &c->uh, c->kd[TG_DIR_DOWN].eof, c->kd[TG_DIR_UP].shut);
	kdir_events(c);
	/*
	 * Held bytes and resumes move on epoll events; waiting for the backlog and a FIN
	 * need polling.
	 */
	for (int d = 0; d < 2; d++) {
		struct kdir *k = &c->kd[d];

		if ((k->holding && !k->paused && (k->wait || k->eof)) || (k->paused && k->wait) ||
		    k->eof != k->shut)
			return false;
	}
	return true;
}

/*
 * Reset, splice relay: what the reset source still had queued, then the pipe. Returns
 * 1 when all of it is in the destination, 0 while some is not, -1 if the destination
 * failed too.
 */
static int splice_drain_reset(struct conn *c, int d)
{
	struct splice_dir *s = &c->sdir[d];
	int failed;

	for (int i = 0; i < SPLICE_ROUNDS; i++) {
		size_t before = s->in_pipe;
		bool eof = s->eof;

		if (splice_pump(c, d, &failed)) {
			if (failed != d)
				return -1;
			s->eof = true; /* the source's error ends what it can give */
		}
		if (s->in_pipe == before && s->eof == eof)
			break;
	}
	return s->eof && !s->in_pipe;
}

/*
 * Reset, kernel relay: the reset socket has left the sockhashes; what it still had
 * queued (a paused direction) is read and written by the daemon, after the bytes the
 * kernel redirected. Returns as splice_drain_reset().
 */
static int kdir_drain_reset(struct conn *c, int d)
{
	struct kdir *k = &c->kd[d];
	uint64_t backlog;
	struct tg_end e;

	if (kdir_copy_rest(c, d, true) < 0)
		return -1;
	if (!k->tail_eof || k->hold_len || kdir_backlog(c, d, &e, &backlog))
		return 0;
	return backlog == 0;
}

/*
 * One step of a reset: once everything the gateway accepted from the reset side is in
 * the other side's socket and acknowledged, or RESET_DRAIN_MS is over, reset the other
 * side too. Returns true when the tunnel is closed.
 */
static bool reset_drain(struct conn *c)
{
	int d = c->rst_dir, outq = 0;
	int done = c->relay == RK_SPLICE ? splice_drain_reset(c, d) : kdir_drain_reset(c, d);

	if (done > 0 && (ioctl(dir_dst(c, d), SIOCOUTQ, &outq) || outq > 0))
		done = 0;
	if (done || now_ms() >= c->rst_deadline_ms) {
		if (!done)
			pr_debug("tunnel %llu: the peer of the reset side took not all bytes within "
				 "%d ms", (unsigned long long)c->tunnel_id, RESET_DRAIN_MS);
		conn_reset(c, c->rst_why);
		return true;
	}
	return false;
}

/*
 * The source of direction @d was reset or failed. Its peer first gets every byte the
 * gateway had accepted from it, then a reset too: a truncated stream must never look
 * like a clean end.
 */
static void tunnel_reset_from(struct conn *c, int d, const char *why)
{
	if (c->rst)
		return;
	c->rst = true;
	c->rst_dir = d;
	c->rst_why = why;
	c->rst_deadline_ms = now_ms() + RESET_DRAIN_MS;
	pr_debug("tunnel %llu: %s reset (%s): delivering what it sent, then resetting the %s",
		 (unsigned long long)c->tunnel_id, d == TG_DIR_UP ? "client" : "upstream", why,
		 d == TG_DIR_UP ? "upstream" : "client");
	unwatch_fd(c, &c->ch);
	unwatch_fd(c, &c->uh);
	if (!reset_drain(c))
		watch(c, true);
}

static void watch(struct conn *c, bool soon)
{
	if (!c->watched) {
		c->watched = true;
		c->watch_next = c->gw->watch;
		c->gw->watch = c;
		c->watch_backoff_ms = 1;
	} else if (soon) {
		c->watch_backoff_ms = 1;
	} else if (c->watch_backoff_ms < WATCH_MAX_BACKOFF_MS) {
		c->watch_backoff_ms *= 2;
	}
	c->watch_at_ms = now_ms() + c->watch_backoff_ms;
}

int tunnel_watch_poll(struct gateway *gw)
{
	uint64_t now = now_ms();
	struct conn *c, *next;
	int wait = -1;

	for (c = gw->watch; c; c = next) {
		next = c->watch_next;
		if (c->watch_at_ms <= now) {
			if (c->rst ? reset_drain(c) : kdir_check(c)) {
				watch_unlink(c);
				continue;
			}
			/* Redirected bytes ahead of held ones drain fast; a FIN hand-over can wait. */
			watch(c, c->kd[0].wait || c->kd[1].wait);
		}
		if (wait < 0 || (int)(c->watch_at_ms - now) < wait)
			wait = c->watch_at_ms > now ? c->watch_at_ms - now : 0;
	}
	return wait;
}

/*
 * Direction @d's source turned readable (@readable: before any FIN) or its FIN came:
 * find what the programs did there since the daemon last looked: a pause (the end's
 * count), held bytes (the held count). Readable with neither is looked at as a hold,
 * which kdir_release() ends at once if nothing is held.
 */
static void kdir_sync(struct conn *c, int d, bool readable)
{
	struct kdir *k = &c->kd[d];
	struct tg_end e;

	if (relay_read_end(c->gw->relay, c->cookie[d], &e))
		return;
	if (!k->paused && e.pauses != k->resumes) {
		k->paused = true;
		c->gw->stats.pauses++;
	}
	if (k->holding)
		return;
	if (e.held != k->released)
		c->gw->stats.holds++;
	k->holding = e.held != k->released || (readable && !k->paused);
}

static void sockmap_event(struct conn *c, struct handle *h, uint32_t events)
{
	int d = h->kind == H_CLIENT ? TG_DIR_UP : TG_DIR_DOWN;
	struct kdir *k = &c->kd[d];
	struct tcp_info ti;
	int err = 0;
	socklen_t len = sizeof(err);
	bool fin;

	if (events & EPOLLERR) {
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		tunnel_reset_from(c, d, err ? strerror(err) : "socket error");
		return;
	}
	if (tcp_info_get(h->fd, &ti)) {
		tunnel_reset_from(c, d, d == TG_DIR_UP ? "client reset" : "upstream reset");
		return;
	}
	/*
	 * FIN_WAIT2 plus the peer's FIN moves the full socket to CLOSE (a timewait sock
	 * takes over): a normal end after our shutdown(SHUT_WR). Only an error is a reset.
	 */
	if (ti.tcpi_state == TCPS_CLOSE) {
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			tunnel_reset_from(c, d, strerror(err));
			return;
		}
	}
	fin = fin_received(ti.tcpi_state) || ti.tcpi_state == TCPS_CLOSE;
	if (!k->tail && ((events & EPOLLIN) || (fin && !k->eof)))
		kdir_sync(c, d, (events & EPOLLIN) && !fin);
	/*
	 * A FIN makes the socket readable too, held bytes or not. kdir_drained() tells
	 * them apart by the held count, and held bytes still on their way to the socket
	 * (queued behind the other direction's) are drained by polling from then on.
	 */
	if (fin && !k->eof) {
		k->eof = true;
		k->fin_received = ti.tcpi_bytes_received; /* final: nothing comes after a FIN */
	}
	if (!kdir_check(c))
		watch(c, true);
}

void tunnel_event(struct conn *c, struct handle *h, uint32_t events)
{
	if (c->rst) { /* from this batch, before the sockets left epoll */
		if (!reset_drain(c))
			watch(c, false);
		return;
	}
	if (c->relay == RK_SOCKMAP) {
		sockmap_event(c, h, events);
		return;
	}
	if (events & EPOLLERR) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		tunnel_reset_from(c, h->kind == H_CLIENT ? TG_DIR_UP : TG_DIR_DOWN,
				  err ? strerror(err) : "socket error");
		return;
	}
	splice_event(c);
}
