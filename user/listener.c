// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The listening sockets of `listen`. */
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "workers.h"

#define LISTEN_BACKLOG 4096

/*
 * With several workers each has its own socket per address in one SO_REUSEPORT group,
 * and the kernel spreads new connections over them. Such a bind would also join the
 * group of another daemon listening there as the same user: before the first socket
 * of an address, a bind without SO_REUSEPORT checks that nobody listens there yet.
 */
static int address_free(const struct sockaddr_any *a)
{
	int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, err = 0;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->sa.sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, &a->sa, a->len))
		err = -errno;
	close(fd);
	return err;
}

/* Open a listening socket for @a; @reuseport: one of the workers' group (see above). */
static int listen_on(const struct sockaddr_any *a, bool reuseport, bool first)
{
	int fd = -1, one = 1, err = first && reuseport ? address_free(a) : 0;
	char name[64];

	if (!err) {
		fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		err = fd < 0 ? -errno : 0;
	}
	if (!err) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (a->sa.sa_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, &a->sa, a->len) || listen(fd, LISTEN_BACKLOG))
			err = -errno;
	}
	if (!err)
		return fd;
	pr_warn("cannot listen on %s: %s%s", sockaddr_fmt(a, name, sizeof(name)), strerror(-err),
		err == -EADDRINUSE ? " (another process has it: stop it or change listen)" : "");
	if (fd >= 0)
		close(fd);
	return err;
}

static bool same_addr(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	return a->len == b->len && !memcmp(&a->ss, &b->ss, a->len);
}

/* Take the listener of @a out of @gw's list, or open a new one. NULL on failure. */
static struct listener *listener_take(struct gateway *gw, const struct sockaddr_any *a)
{
	struct listener **pp, *l;
	int fd;

	for (pp = &gw->listeners; *pp; pp = &(*pp)->next)
		if (same_addr(&(*pp)->addr, a)) {
			l = *pp;
			*pp = l->next;
			return l;
		}
	fd = listen_on(a, gw->workers && gw->workers->n > 1, gw->worker_id == 0);
	if (fd < 0)
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return NULL;
	}
	l->h = (struct handle){ .kind = H_LISTEN, .fd = fd, .owner = l };
	l->addr = *a;
	return l;
}

static void listeners_free(struct listener *l)
{
	struct listener *next;

	for (; l; l = next) {
		next = l->next;
		ev_forget(&l->h);
		free(l);
	}
}

void listeners_arm(struct gateway *gw)
{
	for (struct listener *l = gw->listeners; l; l = l->next)
		if (!l->h.in_epoll && !gw->accept_paused)
			ev_set(&l->h, EPOLLIN);
}

int listeners_sync(struct gateway *gw, const struct config *cfg, bool arm)
{
	struct listener *keep = NULL, *l;

	for (unsigned i = 0; i < cfg->nlisten; i++) {
		l = listener_take(gw, &cfg->listen[i]);
		if (!l)
			goto fail;
		l->next = keep;
		keep = l;
	}
	listeners_free(gw->listeners);
	gw->listeners = keep;
	/* Set once the new set is in: a failed reload keeps the old flags too. */
	for (unsigned i = 0; i < cfg->nlisten; i++)
		for (l = keep; l; l = l->next)
			if (l->addr.len == cfg->listen[i].len &&
			    !memcmp(&l->addr.ss, &cfg->listen[i].ss, l->addr.len))
				l->accept_proxy = cfg->accept_proxy[i];
	if (arm)
		listeners_arm(gw);
	return 0;
fail:
	/* Put back what we took; new sockets stay open and are used. */
	while (keep) {
		l = keep;
		keep = keep->next;
		l->next = gw->listeners;
		gw->listeners = l;
	}
	return -EADDRNOTAVAIL;
}

void listeners_close(struct gateway *gw)
{
	listeners_free(gw->listeners);
	gw->listeners = NULL;
}

/* True if @ip (16 bytes, IPv4 mapped) is an address of this host. */
static bool local_ip(const uint8_t ip[16])
{
	static const uint8_t any6[16], lo6[16] = { [15] = 1 };
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	struct ifaddrs *ifs, *i;
	bool v4 = !memcmp(ip, mapped, 12), found = false;

	/* 0.0.0.0 and :: reach this host too, and all of 127/8. */
	if (!memcmp(ip, any6, 16) || !memcmp(ip, lo6, 16) ||
	    (v4 && (ip[12] == 127 || !memcmp(ip + 12, any6, 4))))
		return true;
	if (getifaddrs(&ifs))
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		struct sockaddr_any a = { .len = sizeof(a.ss) };
		uint8_t got[16];

		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
				     i->ifa_addr->sa_family != AF_INET6))
			continue;
		memcpy(&a.ss, i->ifa_addr, i->ifa_addr->sa_family == AF_INET ?
		       sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		found = sockaddr_ip16(&a, got) && !memcmp(got, ip, 16);
	}
	freeifaddrs(ifs);
	return found;
}

bool listener_is_self(const struct gateway *gw, const struct sockaddr_any *to)
{
	static const uint8_t any6[16];
	uint8_t ip[16], lip[16];

	if (!sockaddr_ip16(to, ip))
		return false;
	for (const struct listener *l = gw->listeners; l; l = l->next) {
		bool l_v4 = l->addr.sa.sa_family == AF_INET, to_v4 = ip[10] == 0xff &&
			    ip[11] == 0xff && !memcmp(ip, any6, 10);

		if (sockaddr_port(&l->addr) != sockaddr_port(to) || !sockaddr_ip16(&l->addr, lip))
			continue;
		if (!memcmp(ip, lip, 16))
			return true;
		/* A wildcard listener has every local address of its family (IPv6 is v6only). */
		if (l_v4 == to_v4 && (l_v4 ? !memcmp(lip + 12, any6, 4) : !memcmp(lip, any6, 16)) &&
		    local_ip(ip))
			return true;
	}
	return false;
}
