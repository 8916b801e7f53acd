/* SPDX-License-Identifier: MIT */
/* [colofs]: the daemon's own keys (mode, listen, buffers, the dirty
 * bitmap, the NBD listener's bounds), their value types and the checks
 * between them.  TLS and access control are in config-tls.c.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <ini.h>

#include "al.h"
#include "config-internal.h"

const char *
config_mode_name(enum config_mode m)
{
	switch (m) {
	case CONFIG_MODE_SECONDARY: return "secondary";
	case CONFIG_MODE_PRIMARY: return "primary";
	}
	abort();
}

const char *
config_buffer_name(enum config_buffer b)
{
	switch (b) {
	case CONFIG_BUFFER_MEMORY: return "memory";
	case CONFIG_BUFFER_FILE: return "file";
	}
	abort();
}

int
config_parse_cmode(struct loader *ld, const char *key, const char *v,
	    enum config_mode *out)
{
	if (strcmp(v, "secondary") == 0) {
		*out = CONFIG_MODE_SECONDARY;
		return 0;
	}
	if (strcmp(v, "primary") == 0) {
		*out = CONFIG_MODE_PRIMARY;
		return 0;
	}
	config_bad_value(ld, key, v, "expected secondary or primary");
	return -1;
}

void
config_dump_cmode(FILE *fp, const char *key, const enum config_mode *v)
{
	fprintf(fp, "%s = %s\n", key, config_mode_name(*v));
}

static int
parse_port(const char *s)
{
	long port = 0;

	if (*s == '\0' || strlen(s) > 5)
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char) *s))
			return -1;
		port = port * 10 + (*s - '0');
	}
	return port >= 1 && port <= 65535 ? (int) port : -1;
}

#define LISTEN_FORMS "expected unix:/PATH, HOST:PORT or [IPV6]:PORT"

int
config_parse_listen(struct loader *ld, const char *key, const char *v, char **out)
{
	struct config_listen *a = &ld->c->listen_addr;
	const char *host, *port;
	size_t hlen;

	if (strncmp(v, "unix:", 5) == 0) {
		const char *p = v + 5;

		if (p[0] != '/') {
			config_bad_value(ld, key, v, "the socket path must be absolute");
			return -1;
		}
		if (strlen(p) >= sizeof ((struct sockaddr_un *) 0)->sun_path) {
			config_bad_value(ld, key, v,
				  "socket path longer than %zu bytes",
				  sizeof ((struct sockaddr_un *) 0)->sun_path - 1);
			return -1;
		}
		if (config_set_string(ld, out, v) == -1)
			return -1;
		a->kind = CONFIG_LISTEN_UNIX;
		strcpy(a->path, p);
		return 0;
	}
	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		char addr[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		size_t alen;

		if (close == NULL) {
			config_bad_value(ld, key, v, "no ']'; " LISTEN_FORMS);
			return -1;
		}
		alen = close - (v + 1);
		if (alen == 0 || alen >= sizeof addr) {
			config_bad_value(ld, key, v, "not an IPv6 address");
			return -1;
		}
		memcpy(addr, v + 1, alen);
		addr[alen] = '\0';
		host = v + 1;
		hlen = alen;
		if (inet_pton(AF_INET6, addr, &a6) != 1) {
			config_bad_value(ld, key, v, "'%s' is not an IPv6 address",
				  addr);
			return -1;
		}
		if (close[1] != ':' || close[2] == '\0') {
			config_bad_value(ld, key, v, "no port; " LISTEN_FORMS);
			return -1;
		}
		port = close + 2;
	} else {
		const char *colon = strrchr(v, ':');
		const char *h;

		if (colon == NULL || colon[1] == '\0') {
			config_bad_value(ld, key, v, "no port; " LISTEN_FORMS);
			return -1;
		}
		if (strchr(v, ':') != colon) {
			config_bad_value(ld, key, v,
				  "an IPv6 address needs brackets: [ADDR]:PORT");
			return -1;
		}
		if (colon == v) {
			config_bad_value(ld, key, v, "no host; " LISTEN_FORMS);
			return -1;
		}
		host = v;
		hlen = colon - v;
		if (hlen >= sizeof a->host) {
			config_bad_value(ld, key, v, "host name too long");
			return -1;
		}
		for (h = v; h < colon; h++) {
			if (!isalnum((unsigned char) *h) && *h != '.' &&
			    *h != '-') {
				config_bad_value(ld, key, v,
					  "the host must be a name or an IPv4 address");
				return -1;
			}
		}
		port = colon + 1;
	}
	if (parse_port(port) == -1) {
		config_bad_value(ld, key, v, "the port must be 1 to 65535");
		return -1;
	}
	if (config_set_string(ld, out, v) == -1)
		return -1;
	a->kind = CONFIG_LISTEN_TCP;
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	strcpy(a->port, port);
	return 0;
}

void
config_dump_listen(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		config_dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: no NBD listener\n", key);
}

int
config_parse_buffer(struct loader *ld, const char *key, const char *v,
	     enum config_buffer *out)
{
	if (strcmp(v, "memory") == 0)
		*out = CONFIG_BUFFER_MEMORY;
	else if (strcmp(v, "file") == 0)
		*out = CONFIG_BUFFER_FILE;
	else {
		config_bad_value(ld, key, v, "expected memory or file");
		return -1;
	}
	return 0;
}

void
config_dump_buffer(FILE *fp, const char *key, const enum config_buffer *v)
{
	fprintf(fp, "%s = %s\n", key, config_buffer_name(*v));
}

/* The dirty bitmap's granule: a power of two from 4K to 64M.  The sync
 * sends a granule in pieces of its buffer (primary.c, sync_long_run), so
 * the bound is not the link's request limit; it keeps the time a VM
 * write may wait for a granule's copy (its range lock) short.
 */
int
config_parse_gran(struct loader *ld, const char *key, const char *v, uint64_t *out)
{
	uint64_t n;

	if (config_parse_size(ld, key, v, &n) == -1)
		return -1;
	if (n < 4096 || n > (UINT64_C(64) << 20) || (n & (n - 1)) != 0) {
		config_bad_value(ld, key, v, "a power of two from 4K to 64M");
		return -1;
	}
	*out = n;
	return 0;
}

void
config_dump_gran(FILE *fp, const char *key, const uint64_t *v)
{
	config_dump_size(fp, key, v);
}

/* A duration: milliseconds, with a suffix ms or s (none: seconds), from
 * 1 ms to one hour.
 */
int
config_parse_msec(struct loader *ld, const char *key, const char *v, unsigned *out)
{
	uint64_t n = 0;
	const char *p = v;

	if (!isdigit((unsigned char) *p))
		goto bad;
	for (; isdigit((unsigned char) *p); p++) {
		n = n * 10 + (*p - '0');
		if (n > 3600000)
			goto bad;
	}
	if (strcmp(p, "ms") == 0)
		;
	else if (*p == '\0' || strcmp(p, "s") == 0)
		n *= 1000;
	else
		goto bad;
	if (n == 0 || n > 3600000)
		goto bad;
	*out = (unsigned) n;
	return 0;
bad:
	config_bad_value(ld, key, v, "a duration from 1ms to 3600s, e.g. 10s or 500ms");
	return -1;
}

void
config_dump_msec(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %ums\n", key, *v);
}

/* Extents in the activity log: 0 (none) to AL_MAX_EXTENTS. */
int
config_parse_alcount(struct loader *ld, const char *key, const char *v,
	      unsigned *out)
{
	unsigned long n;

	if (config_small_number(v, &n) == -1 || n > AL_MAX_EXTENTS) {
		config_bad_value(ld, key, v, "a number from 0 (no activity log) "
			  "to %d", AL_MAX_EXTENTS);
		return -1;
	}
	*out = n;
	return 0;
}

void
config_dump_alcount(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %u\n", key, *v);
}

/* Whole seconds, 0 (none) to a day. */
int
config_parse_seconds(struct loader *ld, const char *key, const char *v,
	      unsigned *out)
{
	unsigned long n = 0;
	const char *p;

	if (*v == '\0' || strlen(v) > 5)
		goto bad;
	for (p = v; *p != '\0'; p++) {
		if (!isdigit((unsigned char) *p))
			goto bad;
		n = n * 10 + (*p - '0');
	}
	if (n > 86400)
		goto bad;
	*out = n;
	return 0;
bad:
	config_bad_value(ld, key, v, "seconds, 0 (no limit) to 86400");
	return -1;
}

void
config_dump_seconds(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %u\n", key, *v);
}

/* A byte budget of the NBD listener: room for one 32 MiB request at
 * least, and at most 1 TiB.
 */
int
config_parse_nbdmem(struct loader *ld, const char *key, const char *v, uint64_t *out)
{
	uint64_t n;

	if (config_parse_size(ld, key, v, &n) == -1)
		return -1;
	if (n < CONFIG_MIN_NBD_MEMORY || n > (UINT64_C(1) << 40)) {
		config_bad_value(ld, key, v, "32M (one request of the largest size) to 1T");
		return -1;
	}
	*out = n;
	return 0;
}

void
config_dump_nbdmem(FILE *fp, const char *key, const uint64_t *v)
{
	config_dump_size(fp, key, v);
}

/* Defaults go through the same parsers as the file's values, so a default
 * is always a value the file could hold.  A NULL default sets nothing (the
 * "?:" only keeps that dead call compilable).
 */
int
config_set_defaults_colofs(struct loader *ld, struct config *c)
{
	int r = 0;

#define X(key, type, field, def)					\
	if ((def) != NULL && r == 0)					\
		r = config_parse_##type(ld, #key, (def) != NULL ? (def) : "",	\
				 &c->field);
	COLOFS_KEYS(X)
#undef X
	return r;
}

int
config_set_colofs_key(struct loader *ld, const char *name, const char *value)
{
	struct config *c = ld->c;

#define X(key, type, field, def)					\
	if (strcmp(name, #key) == 0) {					\
		if (config_mark_seen(ld, &ld->colofs_seen, CK_##key, name,	\
			      "[colofs]") == -1)			\
			return -1;					\
		return config_parse_##type(ld, #key, value, &c->field);	\
	}
	COLOFS_KEYS(X)
#undef X
	config_fail(ld, ld->lineno, "unknown key '%s' in [colofs]", name);
	return -1;
}

/* The line of a [colofs] key if set, else the section's. */
int
config_colofs_key_line(const struct loader *ld, int k)
{
	return ld->colofs_seen.mask & (1u << k) ? ld->colofs_seen.line[k] :
		ld->colofs_line;
}

/* The checks between [colofs] keys, TLS's included; at the end. */
int
config_finish_colofs(struct loader *ld)
{
	struct config *c = ld->c;

	if (config_finish_tls(ld) == -1)
		return -1;
	if (c->buffer == CONFIG_BUFFER_FILE && c->buffer_dir == NULL) {
		config_fail(ld, ld->colofs_seen.line[CK_buffer],
		     "buffer = file needs buffer_dir");
		return -1;
	}
	/* A file buffer's blocks sit at disk offsets: no pool to warm. */
	if (c->buffer_warm != 0 && (c->buffer != CONFIG_BUFFER_MEMORY ||
				    c->mode != CONFIG_MODE_SECONDARY)) {
		config_fail(ld, ld->colofs_seen.line[CK_buffer_warm],
		     "buffer_warm is for mode = secondary with buffer = memory");
		return -1;
	}
	if (c->nbd_conn_memory_limit > c->nbd_memory_limit) {
		config_fail(ld, ld->colofs_seen.mask & (UINT64_C(1) << CK_nbd_conn_memory_limit) ?
		     ld->colofs_seen.line[CK_nbd_conn_memory_limit] :
		     ld->colofs_seen.line[CK_nbd_memory_limit],
		     "nbd_conn_memory_limit (%" PRIu64 ") is over nbd_memory_limit (%" PRIu64 ")",
		     c->nbd_conn_memory_limit, c->nbd_memory_limit);
		return -1;
	}
	/* The mount would hide it, or colofs would read through itself. */
	if (c->buffer_dir != NULL && config_path_within(c->buffer_dir, c->mountpoint)) {
		config_fail(ld, ld->colofs_seen.line[CK_buffer_dir],
		     "buffer_dir %s is inside mountpoint %s", c->buffer_dir,
		     c->mountpoint);
		return -1;
	}
	/* The mount has no room for it: the namespace is fixed. */
	if (c->metrics_file != NULL &&
	    config_path_within(c->metrics_file, c->mountpoint)) {
		config_fail(ld, ld->colofs_seen.line[CK_metrics_file],
		     "metrics_file %s is inside mountpoint %s",
		     c->metrics_file, c->mountpoint);
		return -1;
	}
	if (c->mode == CONFIG_MODE_PRIMARY && c->metrics_file != NULL) {
		config_fail(ld, ld->colofs_seen.line[CK_metrics_file],
		     "metrics_file is for mode = secondary (a primary reports "
		     "in .colo/status)");
		return -1;
	}
	if (c->mode == CONFIG_MODE_PRIMARY && c->listen != NULL) {
		config_fail(ld, ld->colofs_seen.line[CK_listen],
		     "listen is for mode = secondary (a primary sends its "
		     "writes to each disk's secondary)");
		return -1;
	}
	if (config_path_within(c->state_dir, c->mountpoint)) {
		config_fail(ld, ld->colofs_seen.mask & (UINT64_C(1) << CK_state_dir) ?
		     ld->colofs_seen.line[CK_state_dir] : 0,
		     "state_dir %s is inside mountpoint %s", c->state_dir,
		     c->mountpoint);
		return -1;
	}
	return 0;
}
