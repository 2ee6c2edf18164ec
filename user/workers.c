// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Calls from the owner into every worker's thread. */
#include <errno.h>
#include <stdlib.h>

#include "wbox.h"
#include "workers.h"

struct each_call {
	int (*fn)(struct gateway *gw, void *arg);
	struct gateway *gw;
	void *arg;
};

static int each_trampoline(void *p)
{
	struct each_call *c = p;

	return c->fn(c->gw, c->arg);
}

int workers_each(struct gateway *gw, int (*fn)(struct gateway *gw, void *arg), void *arg)
{
	struct workers *ws = gw->workers;
	int first = 0;

	if (!ws)
		return fn(gw, arg);
	for (unsigned i = 0; i < ws->n; i++) {
		struct each_call c = { .fn = fn, .gw = ws->w[i].gw, .arg = arg };
		int ret;

		if (!c.gw)
			continue;
		ret = ws->w[i].box ? wbox_call(ws->w[i].box, each_trampoline, &c) : fn(c.gw, arg);
		if (ret && !first)
			first = ret;
	}
	return first;
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;

	w->rc = w->main(w->gw);
	wbox_close(w->box); /* calls from now on get -ESHUTDOWN */
	return NULL;
}

int workers_start(struct workers *ws, unsigned k, int (*main)(struct gateway *gw))
{
	struct worker *w = &ws->w[k];
	int err;

	w->box = wbox_new();
	if (!w->box)
		return -errno;
	w->main = main;
	err = pthread_create(&w->thread, NULL, thread_main, w);
	if (err) {
		wbox_free(w->box);
		w->box = NULL;
		return -err;
	}
	w->running = true;
	return 0;
}

int workers_join(struct workers *ws)
{
	int rc = 0;

	for (unsigned k = 1; k < ws->n; k++) {
		struct worker *w = &ws->w[k];

		if (!w->running)
			continue;
		pthread_join(w->thread, NULL);
		w->running = false;
		wbox_free(w->box);
		w->box = NULL;
		rc |= w->rc;
	}
	return rc;
}
