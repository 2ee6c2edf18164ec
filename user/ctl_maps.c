// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tunnelctl list --from-maps: the open kernel-relayed tunnels from the pinned maps. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "ctl_maps.h"
#include "relay_shared.h"

#define LINE_MAX_BYTES 256

/* "a.b.c.d:port" for an IPv4-mapped address, "[v6]:port" otherwise. */
static void fmt_addr(const uint8_t ip[16], uint16_t port_be, char *out, size_t len)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	char a[INET6_ADDRSTRLEN];

	if (!memcmp(ip, mapped, 12)) {
		inet_ntop(AF_INET, ip + 12, a, sizeof(a));
		snprintf(out, len, "%s:%u", a, ntohs(port_be));
	} else {
		inet_ntop(AF_INET6, ip, a, sizeof(a));
		snprintf(out, len, "[%s]:%u", a, ntohs(port_be));
	}
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* One `list` line for @t into @out. */
static int fmt_tunnel(const struct tg_tunnel *t, uint64_t now, char *out, size_t len)
{
	char client[64], upstream[64];

	fmt_addr(t->client_addr, t->client_port, client, sizeof(client));
	fmt_addr(t->upstream_addr, t->upstream_port, upstream, sizeof(upstream));
	return snprintf(out, len, "%" PRIu64 "\t%s\t%s\t-\tsockmap\t%llu\t%llu\t%" PRIu64 "\t%"
			PRIu64 "\t%llu\t%llu\n", (uint64_t)t->id, client, upstream,
			(unsigned long long)t->bytes_up, (unsigned long long)t->bytes_down,
			(uint64_t)(now - t->start_ns) / 1000000, (uint64_t)(now - t->last_ns) / 1000000,
			(unsigned long long)t->copied_up, (unsigned long long)t->copied_down);
}

char *ctl_maps_list(const char *dir, char *why, size_t whylen)
{
	char path[512], *out = NULL;
	size_t len = 0;
	__u64 key, *prev = NULL;
	uint64_t now = mono_ns();
	int fd;

	snprintf(path, sizeof(path), "%s/tunnels", dir);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		snprintf(why, whylen, "cannot open the pinned map %s: %s (check the daemon's "
			 "bpf_pin_dir; reading it needs root)", path, strerror(errno));
		return NULL;
	}
	out = calloc(1, 1);
	while (out && !bpf_map_get_next_key(fd, prev, &key)) {
		struct tg_tunnel t;
		char *grown = realloc(out, len + LINE_MAX_BYTES);

		prev = &key;
		if (!grown) {
			free(out);
			out = NULL;
			break;
		}
		out = grown;
		if (!bpf_map_lookup_elem(fd, &key, &t))
			len += fmt_tunnel(&t, now, out + len, LINE_MAX_BYTES);
	}
	close(fd);
	if (!out)
		snprintf(why, whylen, "out of memory");
	return out;
}
