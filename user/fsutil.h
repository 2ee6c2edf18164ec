/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* File system helpers shared by the daemon's modules. */
#ifndef TUNNELGATE_FSUTIL_H
#define TUNNELGATE_FSUTIL_H

#include <sys/types.h>

/*
 * Create directory @path and its missing parents with @mode (like mkdir -p); existing
 * ones are fine. Returns 0 or -errno (-ENAMETOOLONG past PATH_MAX).
 */
int mkdir_p(const char *path, mode_t mode);

/* mkdir_p() for the directory that holds @path (nothing for a bare name or "/x"). */
int mkdir_parent(const char *path, mode_t mode);

#endif
