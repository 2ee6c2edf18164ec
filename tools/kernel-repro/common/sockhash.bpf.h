/* SPDX-License-Identifier: GPL-2.0 */
/* What the reproducers' BPF programs share: a small sockhash keyed by a __u32 slot. */
#ifndef REPRO_SOCKHASH_BPF_H
#define REPRO_SOCKHASH_BPF_H

#define SOCKHASH(name)                                   \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_SOCKHASH);     \
		__uint(max_entries, 4);                  \
		__type(key, __u32);                      \
		__type(value, __u32);                    \
	} name SEC(".maps")

#endif
