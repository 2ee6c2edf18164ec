// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "log.h"

struct tg_cgroup {
	int fd;
	char parent[PATH_MAX]; /* the cgroup the process was in */
	char path[PATH_MAX];   /* the child */
};

/* Mount point of the cgroup2 hierarchy, from /proc/self/mountinfo. */
static int cgroup2_mount(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], mnt[PATH_MAX], *sep;
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER */
		sep = strstr(line, " - ");
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		if ((size_t)snprintf(out, len, "%s", mnt) >= len)
			err = -ENAMETOOLONG;
		else
			err = 0;
		break;
	}
	fclose(f);
	return err;
}

/* The process's cgroup v2 path ("0::/a/b" in /proc/self/cgroup). */
static int cgroup2_self(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[PATH_MAX + 8];
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		err = (size_t)snprintf(out, len, "%s", line + 3) >= len ? -ENAMETOOLONG : 0;
		break;
	}
	fclose(f);
	return err;
}

/* Move this process into the cgroup at @dir. */
static int cgroup_join(const char *dir)
{
	char procs[PATH_MAX + 16];
	int fd, err = 0;

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
	fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, "0", 1) != 1)
		err = -errno;
	close(fd);
	return err;
}

static int cgroup_paths(struct tg_cgroup *cg, const char *tag, char *why, size_t whylen)
{
	char mnt[PATH_MAX], self[PATH_MAX], name[256];
	int err;

	err = cgroup2_mount(mnt, sizeof(mnt));
	if (err) {
		snprintf(why, whylen, "no cgroup2 hierarchy is mounted (mount -t cgroup2 none "
			 "/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid system)");
		return err;
	}
	err = cgroup2_self(self, sizeof(self));
	if (err) {
		snprintf(why, whylen, "cannot find this process's cgroup v2 path in /proc/self/cgroup");
		return err;
	}
	snprintf(name, sizeof(name), "tunnelgated%s%s", tag[0] == '/' ? "" : "-", tag);
	for (char *p = name; *p; p++)
		if (*p == '/')
			*p = '-';
	if (!strcmp(self, "/"))
		self[0] = '\0';
	if ((size_t)snprintf(cg->parent, sizeof(cg->parent), "%s%s", mnt, self) >= sizeof(cg->parent) ||
	    (size_t)snprintf(cg->path, sizeof(cg->path), "%s/%s", cg->parent, name) >= sizeof(cg->path)) {
		snprintf(why, whylen, "cgroup path %s%s/%s is too long", mnt, self, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

struct tg_cgroup *cgroup_enter(const char *tag, char *why, size_t whylen)
{
	struct tg_cgroup *cg = calloc(1, sizeof(*cg));
	int err;

	if (!cg) {
		snprintf(why, whylen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	err = cgroup_paths(cg, tag, why, whylen);
	if (err)
		goto err_free;
	if (mkdir(cg->path, 0755) && errno != EEXIST) {
		err = -errno;
		snprintf(why, whylen, "cannot create cgroup %s: %s (run as root, or give the "
			 "service a delegated cgroup: Delegate=yes)", cg->path, strerror(errno));
		goto err_free;
	}
	err = cgroup_join(cg->path);
	if (err) {
		snprintf(why, whylen, "cannot move the daemon into cgroup %s: %s", cg->path,
			 strerror(-err));
		goto err_rmdir;
	}
	cg->fd = open(cg->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg->fd < 0) {
		err = -errno;
		snprintf(why, whylen, "cannot open cgroup %s: %s", cg->path, strerror(errno));
		goto err_leave;
	}
	pr_debug("joined cgroup %s", cg->path);
	return cg;

err_leave:
	cgroup_join(cg->parent);
err_rmdir:
	rmdir(cg->path);
err_free:
	free(cg);
	errno = -err;
	return NULL;
}

int cgroup_fd(const struct tg_cgroup *cg)
{
	return cg->fd;
}

void cgroup_leave(struct tg_cgroup *cg)
{
	int err;

	if (!cg)
		return;
	close(cg->fd);
	/* Gone already: priv.c's helper moved the daemon out and removed it. */
	if (access(cg->path, F_OK) && errno == ENOENT) {
		free(cg);
		return;
	}
	err = cgroup_join(cg->parent);
	if (err)
		pr_warn("cannot move the daemon back to cgroup %s: %s", cg->parent, strerror(-err));
	/* EBUSY: another process of the same pin dir is still inside; it removes it. */
	if (!err && rmdir(cg->path) && errno != EBUSY && errno != ENOENT)
		pr_warn("cannot remove cgroup %s: %s (remove it with rmdir)", cg->path,
			strerror(errno));
	free(cg);
}
