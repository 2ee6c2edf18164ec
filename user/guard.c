// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The XDP listener guard: load, attach, and keep its maps. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/if_link.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "guard.h"
#include "guard.skel.h"
#include "log.h"

struct guard {
	struct guard_bpf *skel;
	int link[CFG_MAX_XDP_IFS];   /* XDP link fds, -1 when none */
	char ifname[CFG_MAX_XDP_IFS][16];
	unsigned nifs;
	char pin_dir[256];
	bool pins_elsewhere;         /* guard_close() leaves the pins (guard_leave_pins()) */
};

/* The maps, pinned under pin_dir by their names. */
static struct bpf_map *guard_map(struct guard *g, int i)
{
	struct bpf_map *m[] = { g->skel->maps.guard_ports, g->skel->maps.guard_deny,
				g->skel->maps.guard_config, g->skel->maps.guard_syn,
				g->skel->maps.guard_stats };

	return i < (int)(sizeof(m) / sizeof(m[0])) ? m[i] : NULL;
}

static void link_path(const struct guard *g, unsigned i, char *out, size_t len)
{
	snprintf(out, len, "%s/guard_link_%s", g->pin_dir, g->ifname[i]);
}

const char *guard_cidr_fmt(const struct cidr *c, char *out, size_t len)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	char ip[INET6_ADDRSTRLEN];

	if (c->len >= 96 && !memcmp(c->addr, mapped, 12)) {
		inet_ntop(AF_INET, c->addr + 12, ip, sizeof(ip));
		snprintf(out, len, "%s/%u", ip, c->len - 96);
	} else {
		inet_ntop(AF_INET6, c->addr, ip, sizeof(ip));
		snprintf(out, len, "%s/%u", ip, c->len);
	}
	return out;
}

/* The trie's key for @c, the bits past the prefix zero (a delete must match them). */
static struct guard_lpm_key deny_key(const struct cidr *c)
{
	struct guard_lpm_key k = { .prefixlen = c->len };

	memcpy(k.addr, c->addr, 16);
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = c->len > i * 8 ? c->len - i * 8 : 0;

		if (keep < 8)
			k.addr[i] &= (uint8_t)(0xff00 >> keep);
	}
	return k;
}

int guard_deny_add(struct guard *g, const struct cidr *c, enum guard_origin o)
{
	int fd = bpf_map__fd(g->skel->maps.guard_deny);
	struct guard_lpm_key k = deny_key(c);
	struct guard_deny v = { 0 };

	bpf_map_lookup_elem(fd, &k, &v);
	v.origin |= o;
	return bpf_map_update_elem(fd, &k, &v, BPF_ANY) ? -errno : 0;
}

int guard_deny_del(struct guard *g, const struct cidr *c, enum guard_origin o)
{
	int fd = bpf_map__fd(g->skel->maps.guard_deny);
	struct guard_lpm_key k = deny_key(c);
	struct guard_deny v;

	if (bpf_map_lookup_elem(fd, &k, &v) || !(v.origin & o))
		return -ENOENT;
	v.origin &= ~o;
	if (v.origin)
		return bpf_map_update_elem(fd, &k, &v, BPF_EXIST) ? -errno : 0;
	return bpf_map_delete_elem(fd, &k) ? -errno : 0;
}

void guard_deny_each(struct guard *g, void (*fn)(void *arg, const struct cidr *c, unsigned origin),
		     void *arg)
{
	int fd = bpf_map__fd(g->skel->maps.guard_deny);
	struct guard_lpm_key k, next;
	struct guard_deny v;
	void *prev = NULL;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		k = next;
		prev = &k;
		if (!bpf_map_lookup_elem(fd, &k, &v)) {
			struct cidr c = { .len = k.prefixlen };

			memcpy(c.addr, k.addr, 16);
			fn(arg, &c, v.origin);
		}
	}
}

/* The keys of every entry with the config's origin, to take that origin off. */
struct config_keys {
	struct cidr *list;
	unsigned n, cap;
};

static void collect_config(void *arg, const struct cidr *c, unsigned origin)
{
	struct config_keys *ck = arg;

	if (!(origin & GO_CONFIG))
		return;
	if (ck->n == ck->cap) {
		unsigned cap = ck->cap ? ck->cap * 2 : 64;
		struct cidr *l = realloc(ck->list, cap * sizeof(*l));

		if (!l)
			return;
		ck->list = l;
		ck->cap = cap;
	}
	ck->list[ck->n++] = *c;
}

/* The config's entries: the old ones out (unless tunnelctl added them too), the new in. */
static void sync_deny(struct guard *g, const struct config *cfg)
{
	struct config_keys ck = { 0 };
	char name[64];

	guard_deny_each(g, collect_config, &ck);
	for (unsigned i = 0; i < ck.n; i++)
		guard_deny_del(g, &ck.list[i], GO_CONFIG);
	free(ck.list);
	for (unsigned i = 0; i < cfg->ndeny; i++)
		if (guard_deny_add(g, &cfg->deny[i], GO_CONFIG))
			pr_warn("deny %s: cannot add it to the guard: %s (at most %d entries)",
				guard_cidr_fmt(&cfg->deny[i], name, sizeof(name)), strerror(errno),
				GUARD_MAX_DENY);
}

static bool listens_on(const struct config *cfg, uint16_t port)
{
	for (unsigned i = 0; i < cfg->nlisten; i++)
		if (sockaddr_port(&cfg->listen[i]) == port)
			return true;
	return false;
}

/* guard_ports: the ports of `listen`, host order; the ones no longer listened on go. */
static void sync_ports(struct guard *g, const struct config *cfg)
{
	int fd = bpf_map__fd(g->skel->maps.guard_ports);
	uint16_t keys[GUARD_MAX_PORTS], k, *prev = NULL;
	unsigned n = 0;
	uint8_t one = 1;

	while (n < GUARD_MAX_PORTS && !bpf_map_get_next_key(fd, prev, &keys[n])) {
		prev = &keys[n];
		n++;
	}
	for (unsigned i = 0; i < n; i++)
		if (!listens_on(cfg, keys[i]))
			bpf_map_delete_elem(fd, &keys[i]);
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		k = sockaddr_port(&cfg->listen[i]);
		bpf_map_update_elem(fd, &k, &one, BPF_ANY);
	}
}

static void sync_rate(struct guard *g, const struct config *cfg)
{
	struct guard_config c = { .syn_rate = cfg->syn_rate, .syn_burst = cfg->syn_burst };
	uint32_t zero = 0;

	if (!c.syn_burst)
		c.syn_burst = c.syn_rate > UINT32_MAX / 2 ? UINT32_MAX : c.syn_rate * 2;
	if (!c.syn_burst)
		c.syn_burst = 1;
	bpf_map_update_elem(bpf_map__fd(g->skel->maps.guard_config), &zero, &c, BPF_ANY);
}

void guard_reload(struct guard *g, const struct config *cfg)
{
	bool same = cfg->nxdp_interfaces == g->nifs;

	for (unsigned i = 0; same && i < g->nifs; i++)
		same = !strcmp(cfg->xdp_interfaces[i], g->ifname[i]);
	if (!same)
		pr_warn("reload: xdp_interfaces changes take effect on restart only");
	sync_ports(g, cfg);
	sync_deny(g, cfg);
	sync_rate(g, cfg);
}

/* Pin every map; pins a daemon that died left in our pin dir are replaced. */
static int pin_maps(struct guard *g, char *why, size_t len)
{
	char path[PATH_MAX];
	struct bpf_map *m;
	int err;

	if (mkdir(g->pin_dir, 0700) && errno != EEXIST) { /* relay = splice made none */
		snprintf(why, len, "cannot create bpf_pin_dir %s: %s", g->pin_dir, strerror(errno));
		return -errno;
	}
	for (int i = 0; (m = guard_map(g, i)); i++) {
		snprintf(path, sizeof(path), "%s/%s", g->pin_dir, bpf_map__name(m));
		unlink(path); /* the relay, pinned first, said so if there were stale ones */
		err = bpf_map__pin(m, path);
		if (err) {
			snprintf(why, len, "cannot pin map %s: %s", path, strerror(-err));
			return err;
		}
	}
	return 0;
}

/*
 * The link a dead daemon pinned in our pin dir (a live one would hold our listeners,
 * which start-up took first) still runs its program on the interface: point it at
 * ours. Returns the link fd, or -1 when there is none to take over.
 */
static int take_over(struct guard *g, unsigned i, const char *path)
{
	int fd = bpf_obj_get(path);

	if (fd < 0)
		return -1;
	if (!bpf_link_update(fd, bpf_program__fd(g->skel->progs.guard_xdp), NULL)) {
		pr_warn("xdp_interfaces: took over the guard's XDP link on %s that a daemon that is gone left pinned",
			g->ifname[i]);
		return fd;
	}
	close(fd);
	unlink(path);
	return -1;
}

/* Attach to interface @i: native mode, else generic. Returns the link fd or -errno. */
static int attach(struct guard *g, unsigned i, int ifindex, char *why, size_t len)
{
	LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
	int prog = bpf_program__fd(g->skel->progs.guard_xdp), fd;

	fd = bpf_link_create(prog, ifindex, BPF_XDP, &opts);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) {
		opts.flags = XDP_FLAGS_SKB_MODE;
		fd = bpf_link_create(prog, ifindex, BPF_XDP, &opts);
		if (fd >= 0)
			pr_info("xdp_interfaces: %s has no native XDP: the guard runs in generic mode (after the kernel made the skb)",
				g->ifname[i]);
	}
	if (fd >= 0)
		return fd;
	snprintf(why, len, "cannot attach the XDP guard to %s: %s%s", g->ifname[i], strerror(errno),
		 errno == EBUSY || errno == EEXIST ?
		 " (it has an XDP program already, another daemon's or tool's: see bpftool net; "
		 "detach it or remove the interface from xdp_interfaces)" : "");
	return -errno;
}

static int attach_all(struct guard *g, char *why, size_t len)
{
	char path[PATH_MAX];

	for (unsigned i = 0; i < g->nifs; i++) {
		int ifindex = if_nametoindex(g->ifname[i]), fd;

		if (!ifindex) {
			snprintf(why, len, "xdp_interfaces: there is no interface %s (see ip link)",
				 g->ifname[i]);
			return -ENODEV;
		}
		link_path(g, i, path, sizeof(path));
		fd = take_over(g, i, path);
		if (fd < 0) {
			fd = attach(g, i, ifindex, why, len);
			if (fd < 0)
				return fd;
			if (bpf_obj_pin(fd, path)) {
				snprintf(why, len, "cannot pin the XDP link %s: %s", path, strerror(errno));
				close(fd);
				return -errno;
			}
		}
		g->link[i] = fd;
	}
	return 0;
}

int guard_open(const struct config *cfg, struct guard **out, char *why, size_t len)
{
	struct guard *g;
	int err;

	*out = NULL;
	if (!cfg->nxdp_interfaces)
		return 0;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	for (unsigned i = 0; i < CFG_MAX_XDP_IFS; i++)
		g->link[i] = -1;
	g->nifs = cfg->nxdp_interfaces;
	memcpy(g->ifname, cfg->xdp_interfaces, sizeof(g->ifname));
	snprintf(g->pin_dir, sizeof(g->pin_dir), "%s", cfg->bpf_pin_dir);
	g->skel = guard_bpf__open_and_load();
	if (!g->skel) {
		err = -errno;
		snprintf(why, len, "cannot load the XDP guard program: %s", strerror(errno));
		free(g);
		return err;
	}
	guard_reload(g, cfg);
	err = pin_maps(g, why, len);
	if (!err)
		err = attach_all(g, why, len);
	if (err) {
		guard_close(g);
		return err;
	}
	*out = g;
	return 0;
}

void guard_counters(struct guard *g, struct guard_stats *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct guard_stats *per;
	uint32_t zero = 0;

	memset(out, 0, sizeof(*out));
	if (ncpu <= 0 || !(per = calloc(ncpu, sizeof(*per))))
		return;
	if (!bpf_map_lookup_elem(bpf_map__fd(g->skel->maps.guard_stats), &zero, per)) {
		for (int i = 0; i < ncpu; i++) {
			out->passed += per[i].passed;
			out->denied += per[i].denied;
			out->rate_limited += per[i].rate_limited;
			out->not_judged += per[i].not_judged;
			out->malformed += per[i].malformed;
		}
	}
	free(per);
}

void guard_unpin(struct guard *g)
{
	char path[PATH_MAX];
	struct bpf_map *m;

	if (!g)
		return;
	for (int i = 0; (m = guard_map(g, i)); i++) {
		snprintf(path, sizeof(path), "%s/%s", g->pin_dir, bpf_map__name(m));
		if (unlink(path) && errno != ENOENT)
			pr_warn("cannot remove pin %s: %s", path, strerror(errno));
	}
	for (unsigned i = 0; i < g->nifs; i++) {
		link_path(g, i, path, sizeof(path));
		if (unlink(path) && errno != ENOENT)
			pr_warn("cannot remove pin %s: %s", path, strerror(errno));
	}
	rmdir(g->pin_dir); /* empty only without the relay, which removes it otherwise */
}

void guard_leave_pins(struct guard *g)
{
	if (g)
		g->pins_elsewhere = true;
}

void guard_close(struct guard *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < g->nifs; i++) {
		if (g->link[i] < 0)
			continue;
		/* Off the interface now, whoever removes the pin that holds the link. */
		if (bpf_link_detach(g->link[i]))
			pr_warn("cannot detach the XDP guard from %s: %s (bpftool net shows it)",
				g->ifname[i], strerror(errno));
		close(g->link[i]);
	}
	if (!g->pins_elsewhere)
		guard_unpin(g);
	guard_bpf__destroy(g->skel);
	free(g);
}
