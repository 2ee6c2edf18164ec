// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A worker's mailbox: calls run on the worker's thread, the caller waits. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "wbox.h"

/* One call, on the caller's stack until it is done. */
struct wcall {
	int (*fn)(void *arg);
	void *arg;
	int ret;
	bool done;
	struct wcall *next;
};

struct wbox {
	pthread_mutex_t lock;
	pthread_cond_t done;     /* a call of this box finished */
	struct wcall *head, *tail;
	bool closed;
	int efd;
};

struct wbox *wbox_new(void)
{
	struct wbox *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->done, NULL);
	return b;
}

void wbox_free(struct wbox *b)
{
	if (!b)
		return;
	close(b->efd);
	pthread_cond_destroy(&b->done);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int wbox_fd(const struct wbox *b)
{
	return b->efd;
}

int wbox_call(struct wbox *b, int (*fn)(void *arg), void *arg)
{
	struct wcall c = { .fn = fn, .arg = arg };
	uint64_t one = 1;

	pthread_mutex_lock(&b->lock);
	if (b->closed) {
		pthread_mutex_unlock(&b->lock);
		return -ESHUTDOWN;
	}
	if (b->tail)
		b->tail->next = &c;
	else
		b->head = &c;
	b->tail = &c;
	pthread_mutex_unlock(&b->lock);
	if (write(b->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno; /* cannot happen with a valid eventfd; never left queued then */
	pthread_mutex_lock(&b->lock);
	while (!c.done)
		pthread_cond_wait(&b->done, &b->lock);
	pthread_mutex_unlock(&b->lock);
	return c.ret;
}

/* Take the calls waiting now, in order. */
static struct wcall *take_all(struct wbox *b)
{
	struct wcall *list;

	pthread_mutex_lock(&b->lock);
	list = b->head;
	b->head = b->tail = NULL;
	pthread_mutex_unlock(&b->lock);
	return list;
}

/* Mark @c done (with @ret) and wake its caller. */
static void finish(struct wbox *b, struct wcall *c, int ret)
{
	pthread_mutex_lock(&b->lock);
	c->ret = ret;
	c->done = true;
	pthread_cond_broadcast(&b->done);
	pthread_mutex_unlock(&b->lock);
}

void wbox_serve(struct wbox *b)
{
	uint64_t n;
	struct wcall *c, *next;

	if (read(b->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	for (c = take_all(b); c; c = next) {
		next = c->next; /* c lives on its caller's stack: gone once finished */
		finish(b, c, c->fn(c->arg));
	}
}

void wbox_close(struct wbox *b)
{
	struct wcall *c, *next;

	pthread_mutex_lock(&b->lock);
	b->closed = true;
	pthread_mutex_unlock(&b->lock);
	for (c = take_all(b); c; c = next) {
		next = c->next;
		finish(b, c, -ESHUTDOWN);
	}
}
