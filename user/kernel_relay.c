// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The kernel relay's userspace half.
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
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include "ev.h"
#include "kernel_relay.h"
#include "log.h"
#include "relay.h"

#define HOLD_BUF_BYTES (4096 * 1024) /* held bytes read per round, at most; see hold_cap() */
#define HOLD_ROUNDS 8 /* reads per event, then the other connections get a turn */
#define STUCK_FLOOR_BYTES (256ull << 20) /* see kdir_stuck_check() */

/* TCP states as tcp_info reports them (include/net/tcp_states.h). */
enum { TCPS_TIME_WAIT = 6, TCPS_CLOSE = 7, TCPS_CLOSE_WAIT = 8, TCPS_LAST_ACK = 9, TCPS_CLOSING = 11 };

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
int kernel_relay_start(struct tunnel *t, const struct sockaddr_any *client, uint64_t crecvd,
		       uint64_t urecvd)
{
	struct sockaddr_any ua = { .len = sizeof(ua.ss) };
	struct tg_tunnel v = {
		.id = t->id,
		/* forwarded by the daemon before the hand-off */
		.bytes_up = t->handoff[TG_DIR_UP],
		.bytes_down = t->handoff[TG_DIR_DOWN],
		.copied_up = t->handoff[TG_DIR_UP],
		.copied_down = t->handoff[TG_DIR_DOWN],
		.start_ns = now_ns(),
	};
	int err;

	v.last_ns = v.start_ns;
	getpeername(dir_src(t, TG_DIR_DOWN), &ua.sa, &ua.len);
	addr16(client, v.client_addr, &v.client_port);
	addr16(&ua, v.upstream_addr, &v.upstream_port);
	t->kd[TG_DIR_UP] = (struct kdir){ .read_before = crecvd };
	t->kd[TG_DIR_DOWN] = (struct kdir){ .read_before = urecvd };
	if (sent_total(dir_dst(t, TG_DIR_UP), &t->kd[TG_DIR_UP].peer_base) ||
	    sent_total(dir_dst(t, TG_DIR_DOWN), &t->kd[TG_DIR_DOWN].peer_base))
		return -errno;
	err = relay_add(t->set->relay, &v, dir_src(t, TG_DIR_UP), dir_src(t, TG_DIR_DOWN),
			t->cookie);
	if (err) {
		/* What the kernel relayed before the refusal counts as handed off. */
		t->handoff[TG_DIR_UP] = v.bytes_up;
		t->handoff[TG_DIR_DOWN] = v.bytes_down;
		return err;
	}
	ev_set(t->h[TG_DIR_UP], EPOLLIN | EPOLLRDHUP);
	ev_set(t->h[TG_DIR_DOWN], EPOLLIN | EPOLLRDHUP);
	return 0;
}

/*
 * Bytes of direction @d that entered the relay (redirected by the kernel, or held and
 * then written by the daemon) and that the peer's send path has not taken yet.
 */
static int kdir_backlog(struct tunnel *t, int d, struct tg_end *e, uint64_t *backlog)
{
	struct kdir *k = &t->kd[d];
	uint64_t sent, in;
	int err;

	err = relay_read_end(t->set->relay, t->cookie[d], e);
	if (!err)
		err = sent_total(dir_dst(t, d), &sent);
	if (err)
		return err;
	sent -= k->peer_base;
	in = e->relayed + k->released + k->tail_copied;
	*backlog = in > sent ? in - sent : 0;
	return 0;
}

/* Write held bytes read earlier; true when none are left. -errno on a socket error. */
static int hold_flush(struct tunnel *t, int d)
{
	struct kdir *k = &t->kd[d];
	uint64_t sent = 0;
	int rc = 1;

	while (k->hold_off < k->hold_len) {
		ssize_t n = send(dir_dst(t, d), k->hold_buf + k->hold_off, k->hold_len - k->hold_off,
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
		relay_count_copy(t->set->relay, t->id, d, sent);
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
static int kdir_stuck_check(struct tunnel *t, int d)
{
	struct kdir *k = &t->kd[d];
	uint64_t taken = k->released + (k->hold_len - k->hold_off); /* read by the daemon */
	uint64_t limit = 64 * t->set->max_backlog, stuck;
	struct tg_end e;
	int inq = 0;

	/* SIOCINQ first: held bytes that arrive meanwhile count in e.held, not in inq. */
	if (ioctl(dir_src(t, d), SIOCINQ, &inq) || inq < 0 ||
	    relay_read_end(t->set->relay, t->cookie[d], &e))
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
		"256 MiB); resetting the tunnel", (unsigned long long)t->id,
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
static size_t hold_cap(const struct tunnel *t)
{
	uint64_t b = t->set->max_backlog;

	return b < HOLD_BUF_BYTES ? (size_t)b : HOLD_BUF_BYTES;
}

/*
 * Write held bytes read earlier and read more, HOLD_ROUNDS times at most. @inq gets
 * the last SIOCINQ. Returns 0, or -errno on a socket error.
 */
static int hold_copy(struct tunnel *t, int d, int *inq)
{
	struct kdir *k = &t->kd[d];
	size_t cap = hold_cap(t);
	int err;

	for (int i = 0; i < HOLD_ROUNDS; i++) {
		ssize_t n;

		err = hold_flush(t, d);
		if (err <= 0)
			return err;
		/*
		 * Read only what the program held: on a sockhash socket SIOCINQ counts the
		 * held queue, and a longer read would take bytes the verdict program has
		 * not seen yet off the TCP queue (it then relays the rest of that skb
		 * whole: bytes twice). Held bytes may also still wait in the kernel queue
		 * behind the other direction's, so nothing here means "all out".
		 */
		if (ioctl(dir_src(t, d), SIOCINQ, inq) || *inq <= 0)
			return 0;
		n = recv(dir_src(t, d), k->hold_buf,
			 (size_t)*inq < cap ? (size_t)*inq : cap, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
			return 0;
		if (n < 0)
			return -errno;
		k->hold_len = n;
		t->last_ms = now_ms();
	}
	return 0;
}

/*
 * Direction @d holds bytes on its source socket. Once the peer has taken every byte
 * before them, copy them over and release them. Returns -errno on a socket error.
 */
static int kdir_release(struct tunnel *t, int d)
{
	struct kdir *k = &t->kd[d];
	uint64_t backlog;
	struct tg_end e;
	int err, inq = 0;

	if (kdir_backlog(t, d, &e, &backlog))
		return 0;
	k->wait = backlog && !k->hold_len;
	if (k->wait)
		return kdir_stuck_check(t, d); /* redirected bytes first */
	if (!k->hold_buf) {
		k->hold_buf = malloc(hold_cap(t));
		if (!k->hold_buf)
			return -ENOMEM;
	}
	err = hold_copy(t, d, &inq);
	if (k->released != k->release_sent) {
		if (relay_release(t->set->relay, t->cookie[d], k->released))
			return -EIO;
		k->release_sent = k->released;
	}
	if (err < 0)
		return err;
	/* Done when every byte the program held has been written to the peer. */
	if (!k->hold_len && !relay_read_end(t->set->relay, t->cookie[d], &e)) {
		if (e.held == k->released) {
			k->holding = false;
			free(k->hold_buf);
			k->hold_buf = NULL;
		} else if (inq <= 0 && (ioctl(dir_src(t, d), SIOCINQ, &inq) || inq <= 0)) {
			k->wait = true; /* held, but not readable yet */
			return kdir_stuck_check(t, d);
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
static int kdir_copy_rest(struct tunnel *t, int d, bool dead)
{
	struct kdir *k = &t->kd[d];
	size_t cap = hold_cap(t);
	int err;

	if (!k->tail && k->hold_len) {
		err = hold_flush(t, d);
		if (err <= 0)
			return err;
	}
	k->tail = true;
	if (!k->hold_buf && !(k->hold_buf = malloc(cap)))
		return -ENOMEM;
	for (int i = 0; i < HOLD_ROUNDS && !k->tail_eof; i++) {
		ssize_t n;

		err = hold_flush(t, d);
		if (err <= 0)
			return err;
		n = recv(dir_src(t, d), k->hold_buf, cap, MSG_DONTWAIT);
		if (n > 0) {
			k->hold_len = n;
			t->last_ms = now_ms();
			continue;
		}
		if (n == 0 || dead) {
			k->tail_eof = k->eof = true;
			tunnel_note_fin(t, d);
			break;
		}
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
	err = hold_flush(t, d);
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
/*
 * Direction @d's daemon copy (a tail, or a reset's rest) starts only once the peer
 * has taken every byte the kernel redirected before it, so nothing is reordered.
 * True when it may go on; else k->wait asks for polling.
 */
static bool copy_may_start(struct tunnel *t, int d)
{
	struct kdir *k = &t->kd[d];
	uint64_t backlog;
	struct tg_end e;

	if (k->tail_copied || k->tail_eof)
		return true; /* started already: its own bytes are behind the redirected ones */
	if (kdir_backlog(t, d, &e, &backlog))
		return false;
	k->wait = backlog > 0;
	return !k->wait;
}

/* The tail of a paused direction that cannot rejoin: copied once the backlog is out. */
static int tail_copy(struct tunnel *t, int d)
{
	t->kd[d].tail = true;
	return copy_may_start(t, d) ? kdir_copy_rest(t, d, false) : 0;
}

static int kdir_resume(struct tunnel *t, int d)
{
	struct pollfd pfd = { .fd = dir_dst(t, d), .events = POLLOUT };
	struct kdir *k = &t->kd[d];
	uint64_t backlog;
	struct tg_end e;
	int err;

	if (k->tail)
		return tail_copy(t, d);
	if (kdir_backlog(t, d, &e, &backlog))
		return 0;
	/* Redirected bytes still queued are fine: resumed bytes queue behind them. */
	k->wait = backlog > t->set->max_backlog / 4;
	if (k->wait || poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT))
		return 0;
	err = relay_resume(t->set->relay, t->cookie[d], dir_src(t, d));
	if (err == -EOPNOTSUPP) {
		/* Not established any more (a FIN came, or this side was shut). */
		pr_debug("tunnel %llu dir %d: cannot rejoin the kernel relay (%s): the daemon "
			 "copies the rest", (unsigned long long)t->id, d, strerror(-err));
		if (e.held != k->released)
			return -EPROTO;
		return tail_copy(t, d);
	}
	if (err)
		return err;
	k->resumes = e.pauses;
	k->paused = false;
	return 0;
}

/*
 * Direction @d has seen its FIN. 1 once every byte that came before it is in the
 * peer's send queue, so the FIN can follow; 0 while some are not; -EPROTO if the
 * program had to drop bytes (see `lost` in struct tg_end): the stream has a gap.
 */
static int kdir_drained(struct tunnel *t, int d)
{
	struct kdir *k = &t->kd[d];
	uint64_t backlog;
	struct tg_end e;
	int64_t arrived;

	if (k->paused) /* kdir_resume() either resumes it or copies the tail */
		return k->tail_eof && !k->hold_len;
	if (k->holding)
		return 0;
	if (kdir_backlog(t, d, &e, &backlog))
		return 0;
	if (e.lost)
		return -EPROTO;
	/* Held since the last look (or on their way when the FIN came): release them first. */
	if (e.held != k->released) {
		k->holding = true;
		t->set->stats.holds++;
		return 0;
	}
	/* Bytes that reached the source socket after the hand-off (the FIN counts one). */
	arrived = (int64_t)k->fin_received - 1 - (int64_t)k->read_before;
	pr_debug("tunnel %llu dir %d: arrived %lld relayed %llu held %llu released %llu backlog %llu "
		 "peak %llu retransmitted-twice %llu stuck-max %llu", (unsigned long long)t->id,
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
static void kdir_events(struct tunnel *t)
{
	for (int d = 0; d < 2; d++) {
		struct kdir *k = &t->kd[d], *o = &t->kd[!d];
		struct handle *h = t->h[d]; /* d's source, !d's destination */
		uint32_t ev = 0;

		if (h->fd < 0)
			continue;
		if (k->tail) {
			/* Not while the copy waits for the backlog: readable would spin. */
			if (!k->tail_eof && !k->hold_len && !k->wait)
				ev |= EPOLLIN;
		} else if (!k->eof) {
			ev |= EPOLLRDHUP;
			/* A paused source is readable as long as its receive queue holds bytes. */
			if (!k->paused && (!k->holding || (!k->hold_len && !k->wait)))
				ev |= EPOLLIN;
		}
		if (o->hold_len || (o->paused && !o->wait && !o->tail))
			ev |= EPOLLOUT;
		ev_set(h, ev);
	}
}

static enum relay_step fail(struct tunnel *t, const char *why)
{
	t->fail_why = why;
	return RELAY_FAIL;
}

/* Work on held bytes and FIN hand-overs of @t. */
enum relay_step kernel_relay_check(struct tunnel *t)
{
	int err;

	for (int d = 0; d < 2; d++) {
		struct kdir *k = &t->kd[d];
		bool again;

		do { /* twice at most: when the FIN check finds held bytes, release them now */
			bool was_holding = k->holding;

			again = false;
			if (k->paused) {
				err = kdir_resume(t, d);
				if (err) {
					return fail(t, strerror(-err));
				}
			}
			if (k->holding && !k->paused) {
				err = kdir_release(t, d);
				if (err) {
					return fail(t, strerror(-err));
				}
			}
			if (!k->eof || k->shut)
				break;
			err = kdir_drained(t, d);
			if (err < 0) {
				pr_warn("tunnel %llu: the kernel relay dropped bytes of a retransmission "
					"it could not trim; resetting the tunnel so the loss cannot look "
					"like a clean end", (unsigned long long)t->id);
				return fail(t, "bytes lost in the kernel relay");
			}
			if (err) {
				shutdown(dir_dst(t, d), SHUT_WR);
				k->shut = true;
			}
			again = !was_holding && k->holding;
		} while (again);
	}
	if (t->kd[0].shut && t->kd[1].shut)
		return RELAY_DONE;
	tunnel_drop_if_done(t->h[TG_DIR_UP], t->kd[TG_DIR_UP].eof, t->kd[TG_DIR_DOWN].shut);
	tunnel_drop_if_done(t->h[TG_DIR_DOWN], t->kd[TG_DIR_DOWN].eof, t->kd[TG_DIR_UP].shut);
	kdir_events(t);
	/*
	 * Held bytes and resumes move on epoll events; waiting for the backlog and a FIN
	 * need polling.
	 */
	for (int d = 0; d < 2; d++) {
		struct kdir *k = &t->kd[d];

		if ((k->holding && !k->paused && (k->wait || k->eof)) || (k->paused && k->wait) ||
		    k->eof != k->shut)
			return RELAY_POLL;
	}
	return RELAY_IDLE;
}
/*
 * Reset, kernel relay: the reset socket has left the sockhashes; what it still had
 * queued (a paused direction) is read and written by the daemon, after the bytes the
 * kernel redirected. Returns as kernel_relay_drain_reset() says.
 */
int kernel_relay_drain_reset(struct tunnel *t, int d)
{
	struct kdir *k = &t->kd[d];
	uint64_t backlog;
	struct tg_end e;

	if (!copy_may_start(t, d))
		return 0;
	if (kdir_copy_rest(t, d, true) < 0)
		return -1;
	if (!k->tail_eof || k->hold_len || kdir_backlog(t, d, &e, &backlog))
		return 0;
	return backlog == 0;
}
/*
 * Direction @d's source turned readable (@readable: before any FIN) or its FIN came:
 * find what the programs did there since the daemon last looked: a pause (the end's
 * count), held bytes (the held count). Readable with neither is looked at as a hold,
 * which kdir_release() ends at once if nothing is held.
 */
static void kdir_sync(struct tunnel *t, int d, bool readable)
{
	struct kdir *k = &t->kd[d];
	struct tg_end e;

	if (relay_read_end(t->set->relay, t->cookie[d], &e))
		return;
	if (!k->paused && e.pauses != k->resumes) {
		k->paused = true;
		t->set->stats.pauses++;
	}
	if (k->holding)
		return;
	if (e.held != k->released)
		t->set->stats.holds++;
	k->holding = e.held != k->released || (readable && !k->paused);
}

static enum relay_step peer_failed(struct tunnel *t, int d, const char *why)
{
	t->fail_dir = d;
	t->fail_why = why;
	return RELAY_PEER_RESET;
}

enum relay_step kernel_relay_event(struct tunnel *t, int d, uint32_t events)
{
	struct handle *h = t->h[d];
	struct kdir *k = &t->kd[d];
	struct tcp_info ti;
	int err = 0;
	socklen_t len = sizeof(err);
	bool fin;

	if (events & EPOLLERR) {
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		return peer_failed(t, d, err ? strerror(err) : "socket error");
	}
	if (tcp_info_get(h->fd, &ti)) {
		return peer_failed(t, d, d == TG_DIR_UP ? "client reset" : "upstream reset");
	}
	/*
	 * FIN_WAIT2 plus the peer's FIN moves the full socket to CLOSE (a timewait sock
	 * takes over): a normal end after our shutdown(SHUT_WR). Only an error is a reset.
	 */
	if (ti.tcpi_state == TCPS_CLOSE) {
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err)
			return peer_failed(t, d, strerror(err));
	}
	fin = fin_received(ti.tcpi_state) || ti.tcpi_state == TCPS_CLOSE;
	if (!k->tail && ((events & EPOLLIN) || (fin && !k->eof)))
		kdir_sync(t, d, (events & EPOLLIN) && !fin);
	/*
	 * A FIN makes the socket readable too, held bytes or not. kdir_drained() tells
	 * them apart by the held count, and held bytes still on their way to the socket
	 * (queued behind the other direction's) are drained by polling from then on.
	 */
	if (fin && !k->eof) {
		k->eof = true;
		tunnel_note_fin(t, d);
		k->fin_received = ti.tcpi_bytes_received; /* final: nothing comes after a FIN */
	}
	return kernel_relay_check(t);
}

int kernel_relay_counters(const struct tunnel *t, struct tunnel_counts *n)
{
	struct tg_tunnel v;
	uint64_t idle;

	if (relay_read(t->set->relay, t->id, &v))
		return -ENOENT;
	n->up = v.bytes_up;
	n->down = v.bytes_down;
	n->copied_up = v.copied_up;
	n->copied_down = v.copied_down;
	idle = (now_ns() - v.last_ns) / 1000000;
	if (idle < n->idle_ms)
		n->idle_ms = idle;
	return 0;
}

void kernel_relay_stop(struct tunnel *t)
{
	for (int d = 0; d < 2; d++) {
		free(t->kd[d].hold_buf);
		t->kd[d].hold_buf = NULL;
	}
	relay_remove(t->set->relay, t->id, t->cookie, true);
	for (int d = 0; d < 2; d++)
		if (t->kd[d].release_sent)
			relay_release_clear(t->set->relay, t->cookie[d]);
}
