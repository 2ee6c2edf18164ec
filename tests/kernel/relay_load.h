/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The kernel tests' start: the relay's programs loaded, the verdict on `ingress`. */
#ifndef TUNNELGATE_TEST_RELAY_LOAD_H
#define TUNNELGATE_TEST_RELAY_LOAD_H

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "relay.skel.h"

struct relay_maps {
	struct relay_bpf *skel;
	int socks, ingress, ends, tunnels, released;
};

/*
 * Load the programs and attach the verdict to `ingress`, as relay_open() does (the
 * sockops program loaded, not attached). NULL, or the call that failed (errno set).
 */
static inline const char *relay_maps_load(struct relay_maps *m)
{
	int prog;

	m->skel = relay_bpf__open_and_load();
	if (!m->skel)
		return "relay_bpf__open_and_load";
	m->socks = bpf_map__fd(m->skel->maps.socks);
	m->ingress = bpf_map__fd(m->skel->maps.ingress);
	m->ends = bpf_map__fd(m->skel->maps.ends);
	m->tunnels = bpf_map__fd(m->skel->maps.tunnels);
	m->released = bpf_map__fd(m->skel->maps.released);
	prog = bpf_program__fd(m->skel->progs.relay_verdict);
	if (bpf_prog_attach(prog, m->ingress, BPF_SK_SKB_STREAM_VERDICT, 0))
		return "bpf_prog_attach(relay_verdict, ingress)";
	return NULL;
}

#endif
