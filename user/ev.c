// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The poller: epoll registration of handles, and the clock every timeout reads. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ev.h"
#include "log.h"

/* Each worker thread polls its own instance. */
static __thread int epfd = -1;

int ev_open(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

void ev_close(void)
{
	if (epfd >= 0)
		close(epfd);
	epfd = -1;
}

int ev_wait(struct epoll_event *ev, int max, int timeout_ms)
{
	return epoll_wait(epfd, ev, max, timeout_ms);
}

int ev_set(struct handle *h, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };

	if (h->fd < 0)
		return 0;
	/*
	 * Polled for nothing: out of epoll, which reports EPOLLHUP and EPOLLERR whatever
	 * the mask; a socket that hung up would otherwise wake the loop for ever.
	 */
	if (!events) {
		ev_del(h);
		return 0;
	}
	if (h->in_epoll && h->events == events)
		return 0;
	if (epoll_ctl(epfd, h->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, h->fd, &ev)) {
		pr_warn("epoll_ctl on fd %d failed: %s", h->fd, strerror(errno));
		return -errno;
	}
	h->in_epoll = true;
	h->events = events;
	return 0;
}

void ev_del(struct handle *h)
{
	if (!h->in_epoll)
		return;
	epoll_ctl(epfd, EPOLL_CTL_DEL, h->fd, NULL);
	h->in_epoll = false;
	h->events = 0;
}

void ev_forget(struct handle *h)
{
	if (h->fd < 0)
		return;
	/* close() takes the fd out of epoll: no other descriptor shares its file. */
	close(h->fd);
	h->fd = -1;
	h->in_epoll = false;
	h->events = 0;
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
