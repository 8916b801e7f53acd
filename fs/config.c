/* SPDX-License-Identifier: MIT */
/* The deployment file: an INI file read with inih, checked to the last key.
 *
 * Two tables (X-macros, as in inih's examples/ini_xmacros.c) list the keys of
 * [colofs] and of [disk "NAME"]: name, value type, struct field, default.
 * From them come the key enums, the defaults, the key dispatch and
 * config_dump, so a key is added in one place.  Each value type T has
 * parse_T (text -> field, or an error naming key, value and what is allowed)
 * and dump_T (field -> text that parse_T reads back to the same value).
 *
 * inih tells the handler neither the line number nor the section headers
 * (Debian's build has no INI_HANDLER_LINENO and no
 * INI_CALL_HANDLER_ON_NEW_SECTION), and it keeps parsing after an error.  So
 * inih reads through our own line reader (ini_parse_stream), which:
 *   - counts lines: inih calls the reader once per line and the handler for
 *     that line before reading the next, so the handler's line is ours;
 *   - parses section headers itself: it opens each [disk "NAME"] (empty
 *     ones included), and catches duplicate and unknown sections;
 *   - rejects lines longer than inih's buffer (inih would silently split
 *     them into several lines) and lines that are neither a comment, a
 *     section nor "key = value";
 *   - strips leading whitespace, so an indented key is a key and never one
 *     of inih's multi-line continuations;
 *   - returns EOF after the first error: the first error wins.
 * The handler (inih: nonzero is success, a rule kept inside this file) only
 * sets one key of the current section.  Checks that span keys or sections
 * (required keys, buffer_dir, export names, user names) run at the end.
 *
 * Every error is "PATH:LINE: reason" (or "PATH: reason" when no line is to
 * blame) with errno EINVAL; the file's own read errors keep their errno.
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
#include "config.h"

/* [colofs]: key, value type, field of struct config, default (NULL: none).
 * mountpoint is required; listen and buffer_dir are optional.
 */
#define COLOFS_KEYS(X)						\
	X(mountpoint,	path,	mountpoint,	NULL)		\
	X(mode,		cmode,	mode,		"secondary")	\
	X(listen,	listen,	listen,		NULL)		\
	X(buffer,	buffer,	buffer,		"memory")	\
	X(buffer_dir,	path,	buffer_dir,	NULL)		\
	X(buffer_limit,	size,	buffer_limit,	"0")		\
	X(allow_other,	bool,	allow_other,	"true")		\
	X(page_cache,	bool,	page_cache,	"false")		\
	X(allow_chown,	bool,	allow_chown,	"true")		\
	X(metrics_file,	path,	metrics_file,	NULL)		\
	X(state_dir,	path,	state_dir,	"/var/lib/colofs")	\
	X(dirty_granularity, gran, dirty_granularity, "64K")		\
	X(secondary_timeout, msec, secondary_timeout_ms, "10s")	\
	X(activity_log_extent, gran, al_extent,	"4M")		\
	X(activity_log_extents, alcount, al_extents, "64")	\
	/* bounds of the NBD listener (doc/nbd.md, "Bounds") */	\
	X(max_connections, count, max_connections, "16")		\
	X(max_handshakes, count, max_handshakes, "128")		\
	X(max_handshakes_per_address, count, max_handshakes_per_address, "16") \
	X(io_timeout,	seconds, io_timeout,	"30")		\
	X(nbd_memory_limit, nbdmem, nbd_memory_limit, "256M")	\
	X(nbd_conn_memory_limit, nbdmem, nbd_conn_memory_limit, "64M")	\
	/* TLS and access control on the NBD listener (fs/nbd-tls.c).  tls	\
	 * has no default here: finish() makes it require when credentials	\
	 * are configured, off otherwise.					\
	 */								\
	X(tls,		tlsmode, tls,		NULL)		\
	X(tls_psk_file,	path,	tls_psk_file,	NULL)		\
	X(tls_certificates, path, tls_certificates, NULL)	\
	X(tls_verify_peer, bool, tls_verify_peer, "true")	\
	X(tls_authz,	authz,	tls_authz,	NULL)		\
	X(allow,	allow,	allow,		NULL)		\
	X(listen_mode,	perm,	listen_mode,	"0600")		\
	X(listen_group,	group,	listen_group,	NULL)

/* [disk "NAME"]: the same for struct config_disk.  image is required;
 * export defaults to NAME; owner and group are resolved to ids at the end.
 */
#define DISK_KEYS(X)						\
	X(image,	path,	image,		NULL)		\
	X(format,	format,	format,		"raw")		\
	X(export,	export,	export_name,	NULL)		\
	X(owner,	user,	owner,		"root")		\
	X(group,	user,	group,		"root")		\
	X(mode,		perm,	mode,		"0600")		\
	X(secondary,	uri,	secondary,	NULL)		\
	X(secondary_tls_psk_file, path, tls_psk_file, NULL)	\
	X(secondary_tls_username, name, tls_username, NULL)	\
	X(secondary_tls_certificates, path, tls_certificates, NULL)

enum colofs_key {
#define X(key, type, field, def) CK_##key,
	COLOFS_KEYS(X)
#undef X
	CK_COUNT
};

enum disk_key {
#define X(key, type, field, def) DK_##key,
	DISK_KEYS(X)
#undef X
	DK_COUNT
};

#define MAX_KEYS ((int) CK_COUNT > (int) DK_COUNT ? (int) CK_COUNT : (int) DK_COUNT)
_Static_assert(MAX_KEYS <= 64, "struct seen holds a 64-bit mask");
#define DISK_NAME_MAX 64
#define EXPORT_NAME_MAX 4096		/* the NBD protocol's limit */
#define CONFIG_FILE_MAX (1 << 20)

/* Which keys a section has set, and where. */
struct seen {
	uint64_t mask;			/* bit k: key k was set */
	int line[MAX_KEYS];
};

enum section {
	SECTION_NONE,		/* before the first header */
	SECTION_COLOFS,
	SECTION_DISK,
};

struct loader {
	const char *path;		/* for messages */
	const char *pos, *end;		/* the text not read yet */
	int lineno;			/* of the line last handed to inih */
	bool failed;
	int err_errno;			/* of the first error */
	char err[4096];			/* every error, one per line */
	int nerrs, last_err_line;
	bool skip_section;		/* its header was refused */
	struct config *c;
	enum section section;		/* the section being read */
	int colofs_line;		/* its header; 0: none yet */
	struct seen colofs_seen;
	struct seen *disk_seen;		/* one per c->disks[] */
	size_t disk_cap;
};

static void fail(struct loader *ld, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records an error, one line each: the reader goes on past a bad line
 * (and skips a refused section's keys), so that one run reports every
 * problem.  A second error on the same line is a consequence of the
 * first and is dropped; so is everything past CONFIG_MAX_ERRORS.
 */
#define CONFIG_MAX_ERRORS 20

static void
fail(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;
	size_t at = 0;
	int n;

	if (ld->failed) {
		if ((line > 0 && line == ld->last_err_line) ||
		    ld->nerrs >= CONFIG_MAX_ERRORS)
			return;
		at = strlen(ld->err);
		if (at + 2 >= sizeof ld->err)
			return;
		ld->err[at++] = '\n';
	} else {
		ld->err_errno = EINVAL;
	}
	ld->failed = true;
	ld->nerrs++;
	ld->last_err_line = line;
	if (line > 0)
		n = snprintf(ld->err + at, sizeof ld->err - at, "%s:%d: ",
			     ld->path, line);
	else
		n = snprintf(ld->err + at, sizeof ld->err - at, "%s: ",
			     ld->path);
	if (n < 0 || (size_t) n >= sizeof ld->err - at)
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err + at + n, sizeof ld->err - at - n, fmt, ap);
	va_end(ap);
}

static void
fail_errno(struct loader *ld, int line, int err, const char *what)
{
	bool first = !ld->failed;

	fail(ld, line, "%s: %s", what, strerror(err));
	if (first)
		ld->err_errno = err;
}

/* "bad value for KEY: 'VALUE' (ALLOWED)", at the current line. */
static void bad_value(struct loader *ld, const char *key, const char *v,
		      const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
bad_value(struct loader *ld, const char *key, const char *v,
	  const char *fmt, ...)
{
	char allowed[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(allowed, sizeof allowed, fmt, ap);
	va_end(ap);
	fail(ld, ld->lineno, "bad value for %s: '%s' (%s)", key, v, allowed);
}

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

/* ---- value types: parse_T and dump_T ---- */

static int
set_string(struct loader *ld, char **out, const char *v)
{
	char *s = strdup(v);

	if (s == NULL) {
		fail_errno(ld, ld->lineno, errno, "out of memory");
		return -1;
	}
	free(*out);
	*out = s;
	return 0;
}

static void
dump_string(FILE *fp, const char *key, const char *v)
{
	/* Keep the line within inih's limit even for the longest value that
	 * could have been read.
	 */
	if (strlen(key) + strlen(v) + 3 > (size_t) INI_MAX_LINE - 3)
		fprintf(fp, "%s=%s\n", key, v);
	else
		fprintf(fp, "%s = %s\n", key, v);
}

/* An absolute path: the daemon changes directory when it detaches. */
static int
parse_path(struct loader *ld, const char *key, const char *v, char **out)
{
	if (v[0] != '/') {
		bad_value(ld, key, v, "an absolute path");
		return -1;
	}
	return set_string(ld, out, v);
}

static void
dump_path(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set\n", key);
}

static int
parse_cmode(struct loader *ld, const char *key, const char *v,
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
	bad_value(ld, key, v, "expected secondary or primary");
	return -1;
}

static void
dump_cmode(FILE *fp, const char *key, const enum config_mode *v)
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

static int
parse_listen(struct loader *ld, const char *key, const char *v, char **out)
{
	struct config_listen *a = &ld->c->listen_addr;
	const char *host, *port;
	size_t hlen;

	if (strncmp(v, "unix:", 5) == 0) {
		const char *p = v + 5;

		if (p[0] != '/') {
			bad_value(ld, key, v, "the socket path must be absolute");
			return -1;
		}
		if (strlen(p) >= sizeof ((struct sockaddr_un *) 0)->sun_path) {
			bad_value(ld, key, v,
				  "socket path longer than %zu bytes",
				  sizeof ((struct sockaddr_un *) 0)->sun_path - 1);
			return -1;
		}
		if (set_string(ld, out, v) == -1)
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
			bad_value(ld, key, v, "no ']'; " LISTEN_FORMS);
			return -1;
		}
		alen = close - (v + 1);
		if (alen == 0 || alen >= sizeof addr) {
			bad_value(ld, key, v, "not an IPv6 address");
			return -1;
		}
		memcpy(addr, v + 1, alen);
		addr[alen] = '\0';
		host = v + 1;
		hlen = alen;
		if (inet_pton(AF_INET6, addr, &a6) != 1) {
			bad_value(ld, key, v, "'%s' is not an IPv6 address",
				  addr);
			return -1;
		}
		if (close[1] != ':' || close[2] == '\0') {
			bad_value(ld, key, v, "no port; " LISTEN_FORMS);
			return -1;
		}
		port = close + 2;
	} else {
		const char *colon = strrchr(v, ':');
		const char *h;

		if (colon == NULL || colon[1] == '\0') {
			bad_value(ld, key, v, "no port; " LISTEN_FORMS);
			return -1;
		}
		if (strchr(v, ':') != colon) {
			bad_value(ld, key, v,
				  "an IPv6 address needs brackets: [ADDR]:PORT");
			return -1;
		}
		if (colon == v) {
			bad_value(ld, key, v, "no host; " LISTEN_FORMS);
			return -1;
		}
		host = v;
		hlen = colon - v;
		if (hlen >= sizeof a->host) {
			bad_value(ld, key, v, "host name too long");
			return -1;
		}
		for (h = v; h < colon; h++) {
			if (!isalnum((unsigned char) *h) && *h != '.' &&
			    *h != '-') {
				bad_value(ld, key, v,
					  "the host must be a name or an IPv4 address");
				return -1;
			}
		}
		port = colon + 1;
	}
	if (parse_port(port) == -1) {
		bad_value(ld, key, v, "the port must be 1 to 65535");
		return -1;
	}
	if (set_string(ld, out, v) == -1)
		return -1;
	a->kind = CONFIG_LISTEN_TCP;
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	strcpy(a->port, port);
	return 0;
}

static void
dump_listen(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: no NBD listener\n", key);
}

static int
parse_buffer(struct loader *ld, const char *key, const char *v,
	     enum config_buffer *out)
{
	if (strcmp(v, "memory") == 0)
		*out = CONFIG_BUFFER_MEMORY;
	else if (strcmp(v, "file") == 0)
		*out = CONFIG_BUFFER_FILE;
	else {
		bad_value(ld, key, v, "expected memory or file");
		return -1;
	}
	return 0;
}

static void
dump_buffer(FILE *fp, const char *key, const enum config_buffer *v)
{
	fprintf(fp, "%s = %s\n", key, config_buffer_name(*v));
}

/* Bytes, with an optional binary suffix K, M, G or T. */
static int
parse_size(struct loader *ld, const char *key, const char *v, uint64_t *out)
{
	static const char suffixes[] = "KMGT";
	uint64_t n = 0, mult = 1;
	const char *p = v, *s;

	if (!isdigit((unsigned char) *p))
		goto bad;
	for (; isdigit((unsigned char) *p); p++) {
		if (n > (UINT64_MAX - (*p - '0')) / 10)
			goto big;
		n = n * 10 + (*p - '0');
	}
	if (*p != '\0') {
		s = strchr(suffixes, toupper((unsigned char) *p));
		if (s == NULL || p[1] != '\0')
			goto bad;
		mult = UINT64_C(1) << (10 * (s - suffixes + 1));
	}
	if (n > UINT64_MAX / mult)
		goto big;
	*out = n * mult;
	return 0;
bad:
	bad_value(ld, key, v, "bytes, with an optional suffix K, M, G or T");
	return -1;
big:
	bad_value(ld, key, v, "too large");
	return -1;
}

static void
dump_size(FILE *fp, const char *key, const uint64_t *v)
{
	fprintf(fp, "%s = %" PRIu64 "\n", key, *v);
}

/* The dirty bitmap's granule: a power of two from 4K to 64M.  The sync
 * sends a granule in pieces of its buffer (primary.c, sync_long_run), so
 * the bound is not the link's request limit; it keeps the time a VM
 * write may wait for a granule's copy (its range lock) short.
 */
static int
parse_gran(struct loader *ld, const char *key, const char *v, uint64_t *out)
{
	uint64_t n;

	if (parse_size(ld, key, v, &n) == -1)
		return -1;
	if (n < 4096 || n > (UINT64_C(64) << 20) || (n & (n - 1)) != 0) {
		bad_value(ld, key, v, "a power of two from 4K to 64M");
		return -1;
	}
	*out = n;
	return 0;
}

static void
dump_gran(FILE *fp, const char *key, const uint64_t *v)
{
	dump_size(fp, key, v);
}

/* A duration: milliseconds, with a suffix ms or s (none: seconds), from
 * 1 ms to one hour.
 */
static int
parse_msec(struct loader *ld, const char *key, const char *v, unsigned *out)
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
	bad_value(ld, key, v, "a duration from 1ms to 3600s, e.g. 10s or 500ms");
	return -1;
}

static void
dump_msec(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %ums\n", key, *v);
}

/* The secondary's NBD URI, as libnbd reads it (checked by libnbd at
 * start; only the scheme here).
 */
static int
parse_uri(struct loader *ld, const char *key, const char *v, char **out)
{
	static const char *const schemes[] = {
		"nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
	};
	const char *p;
	size_t i;

	for (p = v; *p != '\0'; p++) {
		if (iscntrl((unsigned char) *p) || isspace((unsigned char) *p)) {
			bad_value(ld, key, v, "no spaces or control characters");
			return -1;
		}
	}
	for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (strncmp(v, schemes[i], strlen(schemes[i])) == 0)
			return set_string(ld, out, v);
	bad_value(ld, key, v, "an NBD URI: nbd://HOST:PORT/EXPORT, nbds://..., "
		  "nbd+unix:///EXPORT?socket=PATH");
	return -1;
}

static void
dump_uri(FILE *fp, const char *key, char *const *v)
{
	dump_path(fp, key, v);
}

/* A name (the TLS PSK identity): printable, no spaces. */
static int
parse_name(struct loader *ld, const char *key, const char *v, char **out)
{
	const char *p;

	if (*v == '\0' || strlen(v) > 255)
		goto bad;
	for (p = v; *p != '\0'; p++)
		if (!isgraph((unsigned char) *p))
			goto bad;
	return set_string(ld, out, v);
bad:
	bad_value(ld, key, v, "1 to 255 printable characters, no spaces");
	return -1;
}

static void
dump_name(FILE *fp, const char *key, char *const *v)
{
	dump_path(fp, key, v);
}

static int
parse_bool(struct loader *ld, const char *key, const char *v, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	bad_value(ld, key, v, "expected true, false, yes, no, on, off, 1 or 0");
	return -1;
}

static void
dump_bool(FILE *fp, const char *key, const bool *v)
{
	fprintf(fp, "%s = %s\n", key, *v ? "true" : "false");
}

static int
parse_format(struct loader *ld, const char *key, const char *v,
	     enum image_format *out)
{
	if (image_format_parse(v, out) == -1) {
		bad_value(ld, key, v, "expected raw, qcow2 or auto");
		return -1;
	}
	return 0;
}

static void
dump_format(FILE *fp, const char *key, const enum image_format *v)
{
	fprintf(fp, "%s = %s\n", key, image_format_name(*v));
}

static int
parse_export(struct loader *ld, const char *key, const char *v, char **out)
{
	const char *p;

	if (*v == '\0' || strlen(v) > EXPORT_NAME_MAX) {
		bad_value(ld, key, v, "1 to %d bytes", EXPORT_NAME_MAX);
		return -1;
	}
	for (p = v; *p != '\0'; p++) {
		if (iscntrl((unsigned char) *p)) {
			bad_value(ld, key, v, "no control characters");
			return -1;
		}
	}
	return set_string(ld, out, v);
}

static void
dump_export(FILE *fp, const char *key, char *const *v)
{
	dump_string(fp, key, *v);
}

/* A user or group name, or a numeric id; looked up at the end. */
static int
parse_user(struct loader *ld, const char *key, const char *v, char **out)
{
	const char *p;

	if (*v == '\0') {
		bad_value(ld, key, v, "a name or a numeric id");
		return -1;
	}
	for (p = v; *p != '\0'; p++) {
		if (isspace((unsigned char) *p) || *p == ':') {
			bad_value(ld, key, v, "a name or a numeric id");
			return -1;
		}
	}
	return set_string(ld, out, v);
}

static void
dump_user(FILE *fp, const char *key, char *const *v)
{
	dump_string(fp, key, *v);
}

/* Permission bits in octal, 0 to 0777. */
static int
parse_perm(struct loader *ld, const char *key, const char *v, mode_t *out)
{
	unsigned long m = 0;
	const char *p;

	if (*v == '\0' || strlen(v) > 4)
		goto bad;
	for (p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			goto bad;
		m = m * 8 + (*p - '0');
	}
	if (m > 0777)
		goto bad;
	*out = m;
	return 0;
bad:
	bad_value(ld, key, v, "octal permission bits 0 to 0777, e.g. 0600");
	return -1;
}

static void
dump_perm(FILE *fp, const char *key, const mode_t *v)
{
	fprintf(fp, "%s = %04o\n", key, (unsigned) *v);
}

/* A decimal number of at most 5 digits in *n: 0, or -1. */
static int
small_number(const char *v, unsigned long *n)
{
	const char *p;

	*n = 0;
	if (*v == '\0' || strlen(v) > 5)
		return -1;
	for (p = v; *p != '\0'; p++) {
		if (!isdigit((unsigned char) *p))
			return -1;
		*n = *n * 10 + (unsigned long) (*p - '0');
	}
	return 0;
}

/* Extents in the activity log: 0 (none) to AL_MAX_EXTENTS. */
static int
parse_alcount(struct loader *ld, const char *key, const char *v,
	      unsigned *out)
{
	unsigned long n;

	if (small_number(v, &n) == -1 || n > AL_MAX_EXTENTS) {
		bad_value(ld, key, v, "a number from 0 (no activity log) "
			  "to %d", AL_MAX_EXTENTS);
		return -1;
	}
	*out = n;
	return 0;
}

static void
dump_alcount(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %u\n", key, *v);
}

/* A number of connections, 1 to CONFIG_MAX_COUNT. */
static int
parse_count(struct loader *ld, const char *key, const char *v, unsigned *out)
{
	unsigned long n;

	if (small_number(v, &n) == -1 || n < 1 || n > CONFIG_MAX_COUNT)
		goto bad;
	*out = n;
	return 0;
bad:
	bad_value(ld, key, v, "a number from 1 to %d", CONFIG_MAX_COUNT);
	return -1;
}

static void
dump_count(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %u\n", key, *v);
}

/* Whole seconds, 0 (none) to a day. */
static int
parse_seconds(struct loader *ld, const char *key, const char *v,
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
	bad_value(ld, key, v, "seconds, 0 (no limit) to 86400");
	return -1;
}

static void
dump_seconds(FILE *fp, const char *key, const unsigned *v)
{
	fprintf(fp, "%s = %u\n", key, *v);
}

/* A byte budget of the NBD listener: room for one 32 MiB request at
 * least, and at most 1 TiB.
 */
static int
parse_nbdmem(struct loader *ld, const char *key, const char *v, uint64_t *out)
{
	uint64_t n;

	if (parse_size(ld, key, v, &n) == -1)
		return -1;
	if (n < CONFIG_MIN_NBD_MEMORY || n > (UINT64_C(1) << 40)) {
		bad_value(ld, key, v, "32M (one request of the largest size) to 1T");
		return -1;
	}
	*out = n;
	return 0;
}

static void
dump_nbdmem(FILE *fp, const char *key, const uint64_t *v)
{
	dump_size(fp, key, v);
}

const char *
config_tls_name(enum config_tls t)
{
	switch (t) {
	case CONFIG_TLS_OFF: return "off";
	case CONFIG_TLS_ON: return "on";
	case CONFIG_TLS_REQUIRE: return "require";
	}
	abort();
}

static int
parse_tlsmode(struct loader *ld, const char *key, const char *v,
	      enum config_tls *out)
{
	if (strcmp(v, "off") == 0)
		*out = CONFIG_TLS_OFF;
	else if (strcmp(v, "on") == 0)
		*out = CONFIG_TLS_ON;
	else if (strcmp(v, "require") == 0)
		*out = CONFIG_TLS_REQUIRE;
	else {
		bad_value(ld, key, v, "expected off, on or require");
		return -1;
	}
	return 0;
}

static void
dump_tlsmode(FILE *fp, const char *key, const enum config_tls *v)
{
	fprintf(fp, "%s = %s\n", key, config_tls_name(*v));
}

/* Splits s at sep into trimmed, non-empty items: calls item(ld, key, v,
 * text, len) for each.  The items are bounded by max.
 */
static int
split_list(struct loader *ld, const char *key, const char *v, char sep,
	   size_t max, int (*item)(struct loader *, const char *,
				   const char *, const char *, size_t))
{
	const char *p = v;
	size_t n = 0;

	for (;;) {
		const char *e = strchr(p, sep), *b = p;

		if (e == NULL)
			e = p + strlen(p);
		while (b < e && isspace((unsigned char) *b))
			b++;
		const char *t = e;

		while (t > b && isspace((unsigned char) t[-1]))
			t--;
		if (t == b) {
			bad_value(ld, key, v, "an empty item in the list");
			return -1;
		}
		if (++n > max) {
			bad_value(ld, key, v, "at most %zu items", max);
			return -1;
		}
		if (item(ld, key, v, b, (size_t) (t - b)) == -1)
			return -1;
		if (*e == '\0')
			return 0;
		p = e + 1;
	}
}

static int
authz_item(struct loader *ld, const char *key, const char *v,
	   const char *s, size_t len)
{
	struct config *c = ld->c;
	char **a, *dup;

	(void) key;
	(void) v;
	a = realloc(c->authz, (c->nauthz + 1) * sizeof *a);
	if (a == NULL)
		goto nomem;
	c->authz = a;
	dup = strndup(s, len);
	if (dup == NULL)
		goto nomem;
	c->authz[c->nauthz++] = dup;
	return 0;
nomem:
	fail_errno(ld, ld->lineno, errno, "out of memory");
	return -1;
}

/* PSK usernames or X.509 distinguished names ("CN=primary,O=Example"):
 * DNs hold commas, so the items are separated by '|'.
 */
static int
parse_authz(struct loader *ld, const char *key, const char *v, char **out)
{
	if (split_list(ld, key, v, '|', CONFIG_AUTHZ_MAX, authz_item) == -1)
		return -1;
	return set_string(ld, out, v);
}

static void
dump_authz(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: any holder of valid credentials\n",
			key);
}

static int
allow_item(struct loader *ld, const char *key, const char *v,
	   const char *s, size_t len)
{
	struct config *c = ld->c;
	struct config_net *n = &c->allow_nets[c->nallow];
	char addr[INET6_ADDRSTRLEN + 8];
	const char *slash;
	size_t alen;
	unsigned max;

	if (len >= sizeof addr) {
		bad_value(ld, key, v, "'%.*s' is not ADDR[/BITS]", (int) len, s);
		return -1;
	}
	slash = memchr(s, '/', len);
	alen = slash != NULL ? (size_t) (slash - s) : len;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, n->addr) == 1) {
		n->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, n->addr) == 1) {
		n->family = AF_INET6;
		max = 128;
	} else {
		bad_value(ld, key, v, "'%s' is not an IPv4 or IPv6 address",
			  addr);
		return -1;
	}
	n->bits = max;
	if (slash != NULL) {
		const char *b = slash + 1, *e = s + len;
		unsigned bits = 0;

		if (b == e || e - b > 3)
			goto badbits;
		for (; b < e; b++) {
			if (!isdigit((unsigned char) *b))
				goto badbits;
			bits = bits * 10 + (*b - '0');
		}
		if (bits > max)
			goto badbits;
		n->bits = bits;
	}
	c->nallow++;
	return 0;
badbits:
	bad_value(ld, key, v, "'%.*s': the prefix length must be 0 to %u",
		  (int) len, s, max);
	return -1;
}

/* ADDR[/BITS], ... : the TCP clients the listener accepts. */
static int
parse_allow(struct loader *ld, const char *key, const char *v, char **out)
{
	if (split_list(ld, key, v, ',', CONFIG_ALLOW_MAX, allow_item) == -1)
		return -1;
	return set_string(ld, out, v);
}

static void
dump_allow(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: every address\n", key);
}

/* An optional group (name or id), resolved at the end. */
static int
parse_group(struct loader *ld, const char *key, const char *v, char **out)
{
	return parse_user(ld, key, v, out);
}

static void
dump_group(FILE *fp, const char *key, char *const *v)
{
	if (*v != NULL)
		dump_string(fp, key, *v);
	else
		fprintf(fp, "; %s is not set: the daemon's group\n", key);
}

/* Is host, as written in listen, a loopback address?  Names other than
 * localhost count as not: what they resolve to can change.
 */
static bool
host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

/* ---- sections ---- */

static const char *
disk_label(const struct config_disk *d, char *buf, size_t len)
{
	snprintf(buf, len, "[disk \"%s\"]", d->name);
	return buf;
}

/* Defaults go through the same parsers as the file's values, so a default
 * is always a value the file could hold.  A NULL default sets nothing (the
 * "?:" only keeps that dead call compilable).
 */
static int
set_defaults_colofs(struct loader *ld, struct config *c)
{
	int r = 0;

#define X(key, type, field, def)					\
	if ((def) != NULL && r == 0)					\
		r = parse_##type(ld, #key, (def) != NULL ? (def) : "",	\
				 &c->field);
	COLOFS_KEYS(X)
#undef X
	return r;
}

static int
set_defaults_disk(struct loader *ld, struct config_disk *d)
{
	int r = 0;

#define X(key, type, field, def)					\
	if ((def) != NULL && r == 0)					\
		r = parse_##type(ld, #key, (def) != NULL ? (def) : "",	\
				 &d->field);
	DISK_KEYS(X)
#undef X
	return r;
}

/* A disk name becomes a file name and an NBD export: [A-Za-z0-9._-],
 * 1 to 64 characters, not starting with '.'.
 */
static bool
disk_name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > DISK_NAME_MAX || s[0] == '.')
		return false;
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char) s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	}
	return true;
}

static int
open_disk(struct loader *ld, const char *name, size_t len)
{
	struct config *c = ld->c;
	struct config_disk *d;
	size_t i;

	for (i = 0; i < c->ndisks; i++) {
		if (strlen(c->disks[i].name) == len &&
		    memcmp(c->disks[i].name, name, len) == 0) {
			fail(ld, ld->lineno,
			     "duplicate disk [disk \"%.*s\"] (first on line %d)",
			     (int) len, name, c->disks[i].line);
			return -1;
		}
	}
	if (c->ndisks == ld->disk_cap) {
		size_t cap = ld->disk_cap ? 2 * ld->disk_cap : 4;
		struct config_disk *disks;
		struct seen *seen;

		disks = realloc(c->disks, cap * sizeof *disks);
		if (disks == NULL)
			goto nomem;
		c->disks = disks;
		seen = realloc(ld->disk_seen, cap * sizeof *seen);
		if (seen == NULL)
			goto nomem;
		ld->disk_seen = seen;
		ld->disk_cap = cap;
	}
	d = &c->disks[c->ndisks];
	memset(d, 0, sizeof *d);
	memset(&ld->disk_seen[c->ndisks], 0, sizeof ld->disk_seen[0]);
	c->ndisks++;
	d->line = ld->lineno;
	d->name = strndup(name, len);
	if (d->name == NULL)
		goto nomem;
	return set_defaults_disk(ld, d);
nomem:
	fail_errno(ld, ld->lineno, errno, "out of memory");
	return -1;
}

/* A section header line, leading whitespace already skipped: "[colofs]" or
 * "[disk "NAME"]", optionally followed by a comment.
 */
static int
open_section(struct loader *ld, const char *s, size_t len)
{
	const char *close = memchr(s, ']', len);
	const char *in, *in_end, *rest;

	if (close == NULL) {
		fail(ld, ld->lineno, "section header without ']'");
		return -1;
	}
	for (rest = close + 1; rest < s + len && isspace((unsigned char) *rest);
	     rest++)
		;
	if (rest < s + len && *rest != ';' && *rest != '#') {
		fail(ld, ld->lineno, "unexpected text after section header");
		return -1;
	}
	in = s + 1;
	in_end = close;
	while (in < in_end && isspace((unsigned char) *in))
		in++;
	while (in_end > in && isspace((unsigned char) in_end[-1]))
		in_end--;

	if (in_end - in == 6 && memcmp(in, "colofs", 6) == 0) {
		if (ld->colofs_line != 0) {
			fail(ld, ld->lineno,
			     "duplicate section [colofs] (first on line %d)",
			     ld->colofs_line);
			return -1;
		}
		ld->colofs_line = ld->lineno;
		ld->section = SECTION_COLOFS;
		return 0;
	}
	if (in_end - in > 4 && memcmp(in, "disk", 4) == 0 &&
	    isspace((unsigned char) in[4])) {
		const char *q = in + 4;

		while (q < in_end && isspace((unsigned char) *q))
			q++;
		if (q < in_end && *q == '"' && in_end - q >= 2 &&
		    in_end[-1] == '"') {
			const char *name = q + 1;
			size_t nlen = in_end - 1 - name;

			if (memchr(name, '"', nlen) != NULL ||
			    !disk_name_ok(name, nlen)) {
				fail(ld, ld->lineno,
				     "bad disk name \"%.*s\" (1 to %d of A-Z a-z 0-9 . _ -, not starting with '.')",
				     (int) nlen, name, DISK_NAME_MAX);
				return -1;
			}
			ld->section = SECTION_DISK;
			return open_disk(ld, name, nlen);
		}
	}
	fail(ld, ld->lineno,
	     "unknown section [%.*s] (expected [colofs] or [disk \"NAME\"])",
	     (int) (in_end - in), in);
	return -1;
}

/* Marks key index k set in this section; a second time is an error. */
static int
mark_seen(struct loader *ld, struct seen *seen, int k, const char *key,
	  const char *section)
{
	if (seen->mask & (UINT64_C(1) << k)) {
		fail(ld, ld->lineno,
		     "duplicate key '%s' in %s (first set on line %d)",
		     key, section, seen->line[k]);
		return -1;
	}
	seen->mask |= UINT64_C(1) << k;
	seen->line[k] = ld->lineno;
	return 0;
}

static int
set_colofs_key(struct loader *ld, const char *name, const char *value)
{
	struct config *c = ld->c;

#define X(key, type, field, def)					\
	if (strcmp(name, #key) == 0) {					\
		if (mark_seen(ld, &ld->colofs_seen, CK_##key, name,	\
			      "[colofs]") == -1)			\
			return -1;					\
		return parse_##type(ld, #key, value, &c->field);	\
	}
	COLOFS_KEYS(X)
#undef X
	fail(ld, ld->lineno, "unknown key '%s' in [colofs]", name);
	return -1;
}

static int
set_disk_key(struct loader *ld, const char *name, const char *value)
{
	struct config_disk *d = &ld->c->disks[ld->c->ndisks - 1];
	struct seen *seen = &ld->disk_seen[ld->c->ndisks - 1];
	char label[DISK_NAME_MAX + 16];

	disk_label(d, label, sizeof label);
#define X(key, type, field, def)					\
	if (strcmp(name, #key) == 0) {					\
		if (mark_seen(ld, seen, DK_##key, name, label) == -1)	\
			return -1;					\
		return parse_##type(ld, #key, value, &d->field);	\
	}
	DISK_KEYS(X)
#undef X
	fail(ld, ld->lineno, "unknown key '%s' in %s", name, label);
	return -1;
}

/* inih's handler: nonzero is success.  The reader tracks the section, so
 * inih's section string (truncated at 50 bytes by inih) goes unused.
 */
static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;
	int r;

	(void) section;
	if (ld->skip_section)
		return 1;
	if (*name == '\0') {
		fail(ld, ld->lineno, "missing key name before '='");
		return 0;
	}
	/* "key =;x" would keep ";x", but "key = ;x" (as --dump-config
	 * writes it) is a comment: such a value cannot round-trip.
	 */
	if (*value == ';') {
		fail(ld, ld->lineno, "value of '%s' starts with ';', which "
		     "reads as a comment once spaced out", name);
		return 0;
	}
	switch (ld->section) {
	case SECTION_COLOFS:
		r = set_colofs_key(ld, name, value);
		break;
	case SECTION_DISK:
		r = set_disk_key(ld, name, value);
		break;
	default:
		fail(ld, ld->lineno, "key '%s' outside any section", name);
		r = -1;
		break;
	}
	return r == 0;
}

/* inih's reader (fgets-style): hands over one line at a time, see above.
 * num is inih's line buffer: the line, its "\r\n" and a NUL must fit.
 */
static char *
reader(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	const char *line = ld->pos, *nl, *s, *e;
	size_t len;

	if (ld->pos >= ld->end)
		return NULL;
	nl = memchr(line, '\n', ld->end - line);
	ld->pos = nl != NULL ? nl + 1 : ld->end;
	e = nl != NULL ? nl : ld->end;
	ld->lineno++;
	if (e > line && e[-1] == '\r')
		e--;
	/* A bad line is reported and read as blank: the next ones are
	 * still checked.
	 */
	if (memchr(line, '\0', e - line) != NULL) {
		fail(ld, ld->lineno, "NUL byte in line");
		goto blank;
	}
	if (e - line > num - 3) {
		fail(ld, ld->lineno, "line too long (%zu characters, at most %d)",
		     (size_t) (e - line), num - 3);
		goto blank;
	}
	s = line;
	if (ld->lineno == 1 && e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;				/* a UTF-8 BOM */
	while (s < e && isspace((unsigned char) *s))
		s++;
	len = e - s;

	if (len == 0 || *s == ';' || *s == '#') {
		/* blank or comment */
	} else if (*s == '[') {
		ld->skip_section = false;
		if (open_section(ld, s, len) == -1) {
			ld->skip_section = true;
			goto blank;
		}
	} else {
		/* "key = value" or "key: value", as inih splits it: at the
		 * first '=' or ':' before an inline comment (" ;").
		 */
		const char *p;
		bool sep = false;

		for (p = s; p < e; p++) {
			if (*p == '=' || *p == ':') {
				sep = true;
				break;
			}
			if (*p == ';' && p > s && isspace((unsigned char) p[-1]))
				break;
		}
		if (!sep) {
			fail(ld, ld->lineno,
			     "expected [section] or 'key = value', got '%.*s'",
			     (int) len, s);
			goto blank;
		}
	}
	memcpy(str, s, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
blank:
	str[0] = '\n';
	str[1] = '\0';
	return str;
}

/* ---- cross-key checks ---- */

static int
lookup_id(struct loader *ld, int line, const char *label, const char *key,
	  const char *name, bool group, unsigned *id)
{
	char *buf = NULL, *end;
	size_t buflen = 1024;
	unsigned long n;
	int r;

	errno = 0;
	n = strtoul(name, &end, 10);
	if (isdigit((unsigned char) name[0]) && *end == '\0') {
		if (errno != 0 || n >= (unsigned long) (uid_t) -1) {
			fail(ld, line, "%s: %s id %s is out of range",
			     label, key, name);
			return -1;
		}
		*id = n;
		return 0;
	}
	for (;;) {
		struct passwd pw, *pwp = NULL;
		struct group gr, *grp = NULL;
		char *nbuf = realloc(buf, buflen);

		if (nbuf == NULL) {
			free(buf);
			fail_errno(ld, line, errno, "out of memory");
			return -1;
		}
		buf = nbuf;
		if (group) {
			r = getgrnam_r(name, &gr, buf, buflen, &grp);
			if (r == 0 && grp != NULL)
				*id = grp->gr_gid;
		} else {
			r = getpwnam_r(name, &pw, buf, buflen, &pwp);
			if (r == 0 && pwp != NULL)
				*id = pwp->pw_uid;
		}
		if (r == ERANGE && buflen < (UINT64_C(1) << 20)) {
			buflen *= 2;
			continue;
		}
		free(buf);
		if (r != 0) {
			fail(ld, line, "%s: cannot look up %s '%s': %s",
			     label, key, name, strerror(r));
			return -1;
		}
		if (group ? grp == NULL : pwp == NULL) {
			fail(ld, line, "%s: unknown %s '%s' for %s", label,
			     group ? "group" : "user", name, key);
			return -1;
		}
		return 0;
	}
}

/* Lexically, is path dir itself or inside it?  Trailing slashes aside;
 * symlinks are not followed (the files need not exist yet).
 */
static bool
path_within(const char *path, const char *dir)
{
	size_t dl = strlen(dir), pl = strlen(path);

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	while (pl > 1 && path[pl - 1] == '/')
		pl--;
	if (dl == 1)
		return true;			/* everything is under "/" */
	return pl >= dl && memcmp(path, dir, dl) == 0 &&
	       (pl == dl || path[dl] == '/');
}

static bool
same_path(const char *a, const char *b)
{
	return path_within(a, b) && path_within(b, a);
}

/* The line to blame for a disk key: where it was set, else the header. */
static int
disk_key_line(const struct loader *ld, size_t i, int k)
{
	const struct seen *seen = &ld->disk_seen[i];

	return seen->mask & (UINT64_C(1) << k) ? seen->line[k] : ld->c->disks[i].line;
}

/* A primary's disk needs its secondary; TLS credentials need a TLS
 * scheme (libnbd disables TLS for nbd:// and nbd+unix://), and one kind
 * of credentials only.  A secondary has no use for any of it.
 */
static int
check_secondary_keys(struct loader *ld, const struct config *c, size_t i,
		     const char *label)
{
	const struct config_disk *d = &c->disks[i];
	bool creds = d->tls_psk_file != NULL || d->tls_certificates != NULL;

	if (c->mode != CONFIG_MODE_PRIMARY) {
		if (d->secondary != NULL || creds || d->tls_username != NULL) {
			fail(ld, d->line, "%s: the secondary* keys are for "
			     "mode = primary", label);
			return -1;
		}
		return 0;
	}
	if (d->secondary == NULL) {
		fail(ld, d->line, "%s: mode = primary needs secondary = URI",
		     label);
		return -1;
	}
	if (d->tls_psk_file != NULL && d->tls_certificates != NULL) {
		fail(ld, disk_key_line(ld, i, DK_secondary_tls_certificates),
		     "%s: secondary_tls_psk_file and "
		     "secondary_tls_certificates exclude each other", label);
		return -1;
	}
	if (creds && strncmp(d->secondary, "nbds", 4) != 0) {
		fail(ld, disk_key_line(ld, i, DK_secondary),
		     "%s: TLS credentials need an nbds:// or nbds+unix:// "
		     "secondary URI", label);
		return -1;
	}
	if (d->tls_username != NULL && d->tls_psk_file == NULL) {
		fail(ld, disk_key_line(ld, i, DK_secondary_tls_username),
		     "%s: secondary_tls_username goes with "
		     "secondary_tls_psk_file", label);
		return -1;
	}
	return 0;
}

/* The line of a [colofs] key if set, else the section's. */
static int
colofs_key_line(const struct loader *ld, int k)
{
	return ld->colofs_seen.mask & (1u << k) ? ld->colofs_seen.line[k] :
		ld->colofs_line;
}

#define COLOFS_SET(ld, k) (((ld)->colofs_seen.mask & (1u << CK_##k)) != 0)

/* TLS, allow and the unix socket's mode: the checks between keys, and
 * the secure-by-default rule.
 */
static int
finish_tls(struct loader *ld)
{
	struct config *c = ld->c;
	bool creds = c->tls_psk_file != NULL || c->tls_certificates != NULL;
	enum config_listen_kind kind = c->listen_addr.kind;
	unsigned id;

	if (!COLOFS_SET(ld, tls))
		c->tls = creds ? CONFIG_TLS_REQUIRE : CONFIG_TLS_OFF;
	if (c->tls != CONFIG_TLS_OFF && !creds) {
		fail(ld, colofs_key_line(ld, CK_tls),
		     "tls = %s needs tls_psk_file or tls_certificates",
		     config_tls_name(c->tls));
		return -1;
	}
	if (c->tls_authz != NULL && c->tls == CONFIG_TLS_OFF) {
		fail(ld, colofs_key_line(ld, CK_tls_authz),
		     "tls_authz needs TLS (tls_psk_file or tls_certificates, and tls not off)");
		return -1;
	}
	if (c->tls_authz != NULL && c->tls == CONFIG_TLS_ON) {
		/* A plaintext client has no identity to check. */
		fail(ld, colofs_key_line(ld, CK_tls_authz),
		     "tls_authz needs tls = require (with tls = on a plaintext client bypasses it)");
		return -1;
	}
	if (c->allow != NULL && kind != CONFIG_LISTEN_TCP) {
		fail(ld, colofs_key_line(ld, CK_allow),
		     "allow needs a TCP listen (HOST:PORT)");
		return -1;
	}
	/* listen_mode's default is dumped for every config: only a value
	 * that would change something is an error without a unix socket.
	 */
	if (((COLOFS_SET(ld, listen_mode) && c->listen_mode != 0600) ||
	     COLOFS_SET(ld, listen_group)) && kind != CONFIG_LISTEN_UNIX) {
		fail(ld, colofs_key_line(ld, COLOFS_SET(ld, listen_group) ?
					 CK_listen_group : CK_listen_mode),
		     "listen_mode and listen_group need listen = unix:/PATH");
		return -1;
	}
	c->listen_gid = (gid_t) -1;
	if (c->listen_group != NULL) {
		if (lookup_id(ld, colofs_key_line(ld, CK_listen_group),
			      "[colofs]", "listen_group", c->listen_group,
			      true, &id) == -1)
			return -1;
		c->listen_gid = id;
	}
	/* Secure by default: whoever reaches a listener without TLS reads
	 * and writes the disks.  Only loopback (and the 0600 unix socket)
	 * goes without credentials, unless the file says tls = off.
	 */
	if (kind == CONFIG_LISTEN_TCP && c->tls == CONFIG_TLS_OFF &&
	    !COLOFS_SET(ld, tls) && !host_is_loopback(c->listen_addr.host)) {
		fail(ld, colofs_key_line(ld, CK_listen),
		     "listen = %s is not a loopback address and no TLS credentials are set: anyone who can reach it could read and overwrite the disks; set tls_psk_file or tls_certificates (and allow), or write tls = off to accept that risk",
		     c->listen);
		return -1;
	}
	return 0;
}

static int
finish(struct loader *ld)
{
	struct config *c = ld->c;
	size_t i, j;

	if (ld->colofs_line == 0) {
		fail(ld, 0, "no [colofs] section");
		return -1;
	}
	if (!(ld->colofs_seen.mask & (UINT64_C(1) << CK_mountpoint))) {
		fail(ld, 0, "[colofs] mountpoint is required");
		return -1;
	}
	if (finish_tls(ld) == -1)
		return -1;
	if (c->buffer == CONFIG_BUFFER_FILE && c->buffer_dir == NULL) {
		fail(ld, ld->colofs_seen.line[CK_buffer],
		     "buffer = file needs buffer_dir");
		return -1;
	}
	if (c->nbd_conn_memory_limit > c->nbd_memory_limit) {
		fail(ld, ld->colofs_seen.mask & (UINT64_C(1) << CK_nbd_conn_memory_limit) ?
		     ld->colofs_seen.line[CK_nbd_conn_memory_limit] :
		     ld->colofs_seen.line[CK_nbd_memory_limit],
		     "nbd_conn_memory_limit (%" PRIu64 ") is over nbd_memory_limit (%" PRIu64 ")",
		     c->nbd_conn_memory_limit, c->nbd_memory_limit);
		return -1;
	}
	/* The mount would hide it, or colofs would read through itself. */
	if (c->buffer_dir != NULL && path_within(c->buffer_dir, c->mountpoint)) {
		fail(ld, ld->colofs_seen.line[CK_buffer_dir],
		     "buffer_dir %s is inside mountpoint %s", c->buffer_dir,
		     c->mountpoint);
		return -1;
	}
	/* The mount has no room for it: the namespace is fixed. */
	if (c->metrics_file != NULL &&
	    path_within(c->metrics_file, c->mountpoint)) {
		fail(ld, ld->colofs_seen.line[CK_metrics_file],
		     "metrics_file %s is inside mountpoint %s",
		     c->metrics_file, c->mountpoint);
		return -1;
	}
	if (c->mode == CONFIG_MODE_PRIMARY && c->metrics_file != NULL) {
		fail(ld, ld->colofs_seen.line[CK_metrics_file],
		     "metrics_file is for mode = secondary (a primary reports "
		     "in .colo/status)");
		return -1;
	}
	if (c->mode == CONFIG_MODE_PRIMARY && c->listen != NULL) {
		fail(ld, ld->colofs_seen.line[CK_listen],
		     "listen is for mode = secondary (a primary sends its "
		     "writes to each disk's secondary)");
		return -1;
	}
	if (path_within(c->state_dir, c->mountpoint)) {
		fail(ld, ld->colofs_seen.mask & (UINT64_C(1) << CK_state_dir) ?
		     ld->colofs_seen.line[CK_state_dir] : 0,
		     "state_dir %s is inside mountpoint %s", c->state_dir,
		     c->mountpoint);
		return -1;
	}
	for (i = 0; i < c->ndisks; i++) {
		struct config_disk *d = &c->disks[i];
		char label[DISK_NAME_MAX + 16];
		unsigned id;

		disk_label(d, label, sizeof label);
		if (!(ld->disk_seen[i].mask & (UINT64_C(1) << DK_image))) {
			fail(ld, d->line, "%s image is required", label);
			return -1;
		}
		if (check_secondary_keys(ld, c, i, label) == -1)
			return -1;
		/* Strictly inside: an image that is the mountpoint itself
		 * fails the daemon's "not a directory" check.
		 */
		if (path_within(d->image, c->mountpoint) &&
		    !same_path(d->image, c->mountpoint)) {
			fail(ld, disk_key_line(ld, i, DK_image),
			     "%s image %s is inside mountpoint %s", label,
			     d->image, c->mountpoint);
			return -1;
		}
		for (j = 0; j < i; j++) {
			if (same_path(c->disks[j].image, d->image)) {
				fail(ld, disk_key_line(ld, i, DK_image),
				     "%s image %s is already used by [disk \"%s\"] (line %d)",
				     label, d->image, c->disks[j].name,
				     c->disks[j].line);
				return -1;
			}
		}
		if (d->format == IMAGE_FORMAT_QCOW2 && c->buffer_dir == NULL) {
			fail(ld, disk_key_line(ld, i, DK_format),
			     "%s format = qcow2 needs buffer_dir in [colofs] (for its overlay)",
			     label);
			return -1;
		}
		if (lookup_id(ld, disk_key_line(ld, i, DK_owner), label,
			      "owner", d->owner, false, &id) == -1)
			return -1;
		d->uid = id;
		if (lookup_id(ld, disk_key_line(ld, i, DK_group), label,
			      "group", d->group, true, &id) == -1)
			return -1;
		d->gid = id;
		if (d->export_name == NULL &&
		    (d->export_name = strdup(d->name)) == NULL) {
			fail_errno(ld, d->line, errno, "out of memory");
			return -1;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(c->disks[j].export_name, d->export_name) == 0) {
				fail(ld, disk_key_line(ld, i, DK_export),
				     "%s: export name '%s' is already used by [disk \"%s\"] (line %d)",
				     label, d->export_name, c->disks[j].name,
				     c->disks[j].line);
				return -1;
			}
		}
	}
	if (c->ndisks == 0) {
		fail(ld, 0, "no [disk \"NAME\"] section");
		return -1;
	}
	return 0;
}

/* ---- entry points ---- */

static void
copy_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

static struct config *
load(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
	struct loader ld = {
		.path = name,
		.pos = text,
		.end = text + len,
	};
	int r, saved;

	ld.c = calloc(1, sizeof *ld.c);
	if (ld.c == NULL || (ld.c->path = strdup(name)) == NULL) {
		saved = errno;
		snprintf(ld.err, sizeof ld.err, "%s: %s", name, strerror(saved));
		goto err;
	}
	if (set_defaults_colofs(&ld, ld.c) == -1)
		goto failed;
	r = ini_parse_stream(reader, &ld, handler, &ld);
	if (!ld.failed && r == -2)
		fail_errno(&ld, 0, ENOMEM, "out of memory");
	else if (!ld.failed && r != 0)
		fail(&ld, r, "syntax error");	/* the reader should catch all */
	if (ld.failed || finish(&ld) == -1)
		goto failed;
	free(ld.disk_seen);
	return ld.c;
failed:
	saved = ld.err_errno;
err:
	copy_err(err, errlen, ld.err);
	free(ld.disk_seen);
	config_free(ld.c);
	errno = saved;
	return NULL;
}

struct config *
config_load_string(const char *text, const char *name, char *err,
		   size_t errlen)
{
	return load(text, strlen(text), name, err, errlen);
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config *c = NULL;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		goto io_err;
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL)
		goto io_err;
	for (;;) {
		n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto io_err;
		if (n == 0)
			break;
		len += n;
		if (len > CONFIG_FILE_MAX) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen,
					 "%s: file too large (over %d bytes)",
					 path, CONFIG_FILE_MAX);
			errno = EFBIG;
			goto out;
		}
	}
	c = load(buf, len, path, err, errlen);
	goto out;
io_err:
	saved = errno;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: cannot read: %s", path,
			 strerror(saved));
	errno = saved;
out:
	saved = errno;
	free(buf);
	if (fd != -1)
		close(fd);
	errno = saved;
	return c;
}

void
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->ndisks; i++) {
		free(c->disks[i].name);
		free(c->disks[i].image);
		free(c->disks[i].export_name);
		free(c->disks[i].owner);
		free(c->disks[i].group);
		free(c->disks[i].secondary);
		free(c->disks[i].tls_psk_file);
		free(c->disks[i].tls_username);
		free(c->disks[i].tls_certificates);
	}
	free(c->disks);
	free(c->path);
	free(c->mountpoint);
	free(c->listen);
	free(c->buffer_dir);
	free(c->metrics_file);
	free(c->state_dir);
	free(c->tls_psk_file);
	free(c->tls_certificates);
	free(c->tls_authz);
	for (i = 0; i < c->nauthz; i++)
		free(c->authz[i]);
	free(c->authz);
	free(c->allow);
	free(c->listen_group);
	free(c);
}

void
config_dump(const struct config *c, FILE *fp)
{
	size_t i;

	fprintf(fp, "; colofs configuration read from %s\n", c->path);
	fprintf(fp, "; every effective value, defaults included\n");
	fprintf(fp, "[colofs]\n");
#define X(key, type, field, def) dump_##type(fp, #key, &c->field);
	COLOFS_KEYS(X)
#undef X
	for (i = 0; i < c->ndisks; i++) {
		const struct config_disk *d = &c->disks[i];

		fprintf(fp, "\n[disk \"%s\"]\n", d->name);
#define X(key, type, field, def) dump_##type(fp, #key, &d->field);
		DISK_KEYS(X)
#undef X
	}
}
