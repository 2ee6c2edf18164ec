// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tunnelctl: list and manage the tunnels of a running tunnelgated. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_maps.h"
#include "version.h"

#define DEFAULT_SOCKET "/run/tunnelgate/control.sock"
#define MAX_COLS 12

static void usage(FILE *f)
{
	fprintf(f, "usage: tunnelctl [-s SOCKET] COMMAND\n"
		   "  list [--json]  open tunnels: id, client, upstream, target, relay, bytes, age, idle, copied\n"
		   "  list [--json] --from-maps [DIR]\n"
		   "                 the kernel relay's tunnels read from the maps pinned in DIR\n"
		   "                 (default " CTL_DEFAULT_PIN_DIR "), for a daemon that does not answer\n"
		   "  stats          daemon counters\n"
		   "  pools          pools and their servers: health, active connections, queue\n"
		   "  drain SERVER   send no new connections to SERVER (ip:port, or POOL/ip:port);\n"
		   "                 its open tunnels stay\n"
		   "  undrain SERVER take SERVER back\n"
		   "  deny add CIDR  drop CIDR's packets to the listen ports in XDP (and close its\n"
		   "                 connections); deny del CIDR undoes it; deny list shows all\n"
		   "  kill ID        close tunnel ID\n"
		   "  -s SOCKET      control socket (default " DEFAULT_SOCKET ")\n"
		   "  -h, --help     this text\n"
		   "  -V, --version  the version\n");
}

static const struct option long_opts[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Send @req, read the whole answer into a malloc'd string. */
static char *ask(const char *path, const char *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = 0, cap = 65536;
	char *buf;
	ssize_t n;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "tunnelctl: socket path %s is too long\n", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "tunnelctl: cannot connect to %s: %s (is tunnelgated running? see its control option, or pass -s)\n",
			path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		fprintf(stderr, "tunnelctl: cannot send to %s: %s\n", path, strerror(errno));
		close(fd);
		return NULL;
	}
	buf = malloc(cap);
	while (buf && (n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += n;
		if (cap - len < 2) {
			char *b = realloc(buf, cap * 2);

			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
	}
	close(fd);
	if (!buf) {
		fprintf(stderr, "tunnelctl: out of memory\n");
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

/* Split @line at tabs in place. */
static int split(char *line, char **col)
{
	int n = 0;

	col[n++] = line;
	for (char *p = line; *p && n < MAX_COLS; p++)
		if (*p == '\t') {
			*p = '\0';
			col[n++] = p + 1;
		}
	return n;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_list(char *answer, int json)
{
	char *line, *save, *col[MAX_COLS];
	int first = 1;

	if (json)
		printf("[");
	else
		printf("%-6s %-22s %-22s %-28s %-7s %12s %12s %9s %9s %12s %12s\n", "ID", "CLIENT",
		       "UPSTREAM", "TARGET", "RELAY", "BYTES_UP", "BYTES_DOWN", "AGE_MS", "IDLE_MS",
		       "COPIED_UP", "COPIED_DOWN");
	for (line = strtok_r(answer, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (split(line, col) != 11)
			continue;
		if (!json) {
			printf("%-6s %-22s %-22s %-28s %-7s %12s %12s %9s %9s %12s %12s\n", col[0],
			       col[1], col[2], col[3], col[4], col[5], col[6], col[7], col[8], col[9],
			       col[10]);
			continue;
		}
		printf("%s\n  {\"id\": %s, \"client\": ", first ? "" : ",", col[0]);
		json_str(col[1]);
		printf(", \"upstream\": ");
		json_str(col[2]);
		printf(", \"target\": ");
		json_str(col[3]);
		printf(", \"relay\": ");
		json_str(col[4]);
		printf(", \"bytes_up\": %s, \"bytes_down\": %s, \"age_ms\": %s, \"idle_ms\": %s, "
		       "\"copied_up\": %s, \"copied_down\": %s}",
		       col[5], col[6], col[7], col[8], col[9], col[10]);
		first = 0;
	}
	if (json)
		printf("%s]\n", first ? "" : "\n");
}

/* list [--json] --from-maps [DIR]: the pinned maps, for a daemon that does not answer. */
static int list_from_maps(int argc, char **argv, int i, int json)
{
	const char *dir = i < argc ? argv[i++] : CTL_DEFAULT_PIN_DIR;
	char why[600], *answer;

	if (i != argc) {
		usage(stderr);
		return 2;
	}
	answer = ctl_maps_list(dir, why, sizeof(why));
	if (!answer) {
		fprintf(stderr, "tunnelctl: %s\n", why);
		return 1;
	}
	print_list(answer, json);
	free(answer);
	return 0;
}

/* The options before the command. Returns -1 to go on, else the exit code. */
static int parse_opts(int argc, char **argv, const char **sock)
{
	int opt;

	while ((opt = getopt_long(argc, argv, "+s:hV", long_opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			*sock = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tunnelctl %s\n", TG_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *sock = DEFAULT_SOCKET;
	char req[160], *answer;
	int json = 0, rc = parse_opts(argc, argv, &sock);
	const char *cmd;

	if (rc >= 0)
		return rc;
	rc = 0;
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (!strcmp(cmd, "list")) {
		if (optind < argc && !strcmp(argv[optind], "--json")) {
			json = 1;
			optind++;
		}
		if (optind < argc && !strcmp(argv[optind], "--from-maps"))
			return list_from_maps(argc, argv, optind + 1, json);
		snprintf(req, sizeof(req), "list\n");
	} else if (!strcmp(cmd, "stats") || !strcmp(cmd, "pools")) {
		snprintf(req, sizeof(req), "%s\n", cmd);
	} else if (!strcmp(cmd, "kill") && optind < argc) {
		snprintf(req, sizeof(req), "kill %.40s\n", argv[optind++]);
	} else if (!strcmp(cmd, "deny") && optind < argc && !strcmp(argv[optind], "list")) {
		optind++;
		snprintf(req, sizeof(req), "deny list\n");
	} else if (!strcmp(cmd, "deny") && optind + 1 < argc &&
		   (!strcmp(argv[optind], "add") || !strcmp(argv[optind], "del"))) {
		snprintf(req, sizeof(req), "deny %s %.60s\n", argv[optind], argv[optind + 1]);
		optind += 2;
	} else if ((!strcmp(cmd, "drain") || !strcmp(cmd, "undrain")) && optind < argc) {
		snprintf(req, sizeof(req), "%s %.120s\n", cmd, argv[optind++]);
	} else {
		usage(stderr);
		return 2;
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	answer = ask(sock, req);
	if (!answer)
		return 1;
	if (!strncmp(answer, "error\t", 6)) {
		fprintf(stderr, "tunnelctl: %s", answer + 6);
		rc = 1;
	} else if (!strcmp(cmd, "list")) {
		print_list(answer, json);
	} else if (!strcmp(cmd, "pools")) {
		printf("POOL\tBALANCE\tSERVER\tWEIGHT\tACTIVE\tPICKS\tFAILURES\tSTATE\tMAXCONN\tQUEUED\tLAST_CHECK\n%s",
		       answer);
	} else {
		fputs(answer, stdout);
	}
	free(answer);
	return rc;
}
