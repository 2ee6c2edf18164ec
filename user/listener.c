// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The listening sockets of `listen`. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"

#define LISTEN_BACKLOG 4096

/* Open a listening socket for @a. */
static int listen_on(const struct sockaddr_any *a)
{
	int fd, one = 1;
	char name[64];

	fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->sa.sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, &a->sa, a->len) || listen(fd, LISTEN_BACKLOG)) {
		int err = -errno;

		pr_warn("cannot listen on %s: %s%s", sockaddr_fmt(a, name, sizeof(name)),
			strerror(errno),
			errno == EADDRINUSE ? " (another process has it: stop it or change listen)" : "");
		close(fd);
		return err;
	}
	return fd;
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
	fd = listen_on(a);
	if (fd < 0)
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return NULL;
	}
	l->h = (struct handle){ .kind = H_LISTEN, .fd = fd, .owner = l };
	l->addr = *a;
	ev_set(&l->h, EPOLLIN);
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

int listeners_sync(struct gateway *gw, const struct config *cfg)
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
