/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tunnelctl's view of the pinned maps, for when the daemon does not answer: the
 * kernel relay's open tunnels, read straight from bpf_pin_dir.
 */
#ifndef TUNNELGATE_CTL_MAPS_H
#define TUNNELGATE_CTL_MAPS_H

#include <stddef.h>

#define CTL_DEFAULT_PIN_DIR "/sys/fs/bpf/tunnelgate"

/*
 * The `tunnels` map pinned under @dir as the control socket's `list` answer would
 * give it (tab-separated lines; target "-", relay "sockmap"): a malloc'd string, or
 * NULL with the reason in @why.
 */
char *ctl_maps_list(const char *dir, char *why, size_t whylen);

#endif
