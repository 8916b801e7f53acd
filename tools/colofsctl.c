/* SPDX-License-Identifier: MIT */
/* colofsctl: day-to-day operation of a colofs mount.
 *
 * Why this file is long: one command-line tool with a dozen verbs that
 * share the mount lookup, the ctl write and the status parser.
 *
 *   colofsctl [-m MOUNT | -c CONFIG] status [--json]
 *   colofsctl [-m MOUNT | -c CONFIG] watch [-n SECONDS]
 *   colofsctl [-m MOUNT | -c CONFIG] start [--force] | checkpoint | stop
 *   colofsctl [-m MOUNT | -c CONFIG] failover [--wait]
 *   colofsctl [-m MOUNT | -c CONFIG] restart
 *   colofsctl journal FILE
 *   colofsctl [-m MOUNT | -c CONFIG] resync [full] [URI]   (primary)
 *   colofsctl [-m MOUNT | -c CONFIG] protect [full] URI    (done)
 *   colofsctl [-m MOUNT | -c CONFIG] wait STATE [--timeout SECONDS]
 *   colofsctl [-m MOUNT | -c CONFIG] errors
 *   colofsctl --version
 *
 * Both roles: the status's mode= says which columns to show (a primary
 * has dirty bytes, a sync and a link; a secondary buffers and a commit).
 *
 * Everything goes through the mount's .colo/ files, as a script with
 * echo and cat would: a control word is one write() of the word to
 * .colo/ctl (colofs refuses anything else), a refusal's reason is read
 * back from .colo/error, the status is .colo/status.  So it needs nothing
 * but the mount; -c only reads the mountpoint from a config file (with
 * the daemon's own parser, fs/config*.c).
 *
 * The status is turned into JSON without knowing its keys, so that keys
 * added to the daemon show up here unchanged: a value that is a JSON
 * number is a number, anything else a string; DISK.KEY lines (a prefix
 * that has a PREFIX.size line) go into one object per disk in the "disks"
 * array, in the status's order; other PREFIX.KEY lines (nbd.*) into an
 * object named PREFIX; the rest are top-level keys.  The status's
 * disks=N count is the array's length and is not repeated.
 *
 * journal FILE needs no mount: it checks a failover journal (core/
 * journal.c) as a restart would and prints it, one record a line.
 *
 * Exit status: 0 done; 1 colofs refused the word (reason on stderr);
 * 2 usage; 3 the mount cannot be read (not colofs, or its daemon is
 * gone); 4 failover --wait ended in failover_failed; 5 wait timed out.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "fdio.h"
#include "journal.h"
#include "log.h"

enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,
	EXIT_USAGE = 2,
	EXIT_MOUNT = 3,
	EXIT_FAILOVER_FAILED = 4,
	EXIT_TIMEOUT = 5,
};

#ifndef COLOFS_VERSION
#define COLOFS_VERSION "0.1.0"		/* the Makefile's VERSION wins */
#endif

/* Every state of both roles, for wait. */
static const char *const states[] = {
	"none", "running", "failover", "failover_failed", "done",
	"syncing", "replicating", "degraded",
};

#define STATUS_MAX (1 << 20)	/* far more than any status */

struct kv {
	char *key;		/* the whole key, e.g. "vda.size" */
	char *value;
	char *prefix;		/* before the last '.', or NULL */
	const char *name;	/* after it, or the key */
};

struct status {
	char *text;
	struct kv *kv;
	size_t n;
	bool truncated;		/* longer than STATUS_MAX: the rest unread */
};

static const char *mount;
static volatile sig_atomic_t stop_watch;

static void
usage(FILE *fp)
{
	fputs("Usage: colofsctl [-m MOUNT | -c CONFIG] COMMAND\n"
	      "\n"
	      "Commands:\n"
	      "  status [--json]     the replica's status (JSON: one object)\n"
	      "  watch [-n SECONDS]  the status, refreshed (default 1 s)\n"
	      "  start [--force] | checkpoint | stop\n"
	      "                      the .colo/ctl words, both roles (--force:\n"
	      "                      \"start force\")\n"
	      "  failover [--wait]   fail over; --wait shows the commit's\n"
	      "                      progress and returns at done\n"
	      "  protect [full] URI  in done: become URI's primary in place\n"
	      "  resync [full] [URI] primary: copy the dirty granules (or\n"
	      "                      everything) to the secondary again\n"
	      "  wait STATE [--timeout SECONDS]\n"
	      "                      until the state is STATE (for scripts)\n"
	      "  errors              the last errors raised, with their times\n"
	      "  restart             a planned restart of the serving\n"
	      "                      process (colofs --holder); returns\n"
	      "                      when the new one serves\n"
	      "  journal FILE        check and print a failover journal\n"
	      "\n"
	      "Options:\n"
	      "  -m, --mount MOUNT   the colofs mountpoint\n"
	      "  -c, --config FILE   read the mountpoint from colofs's config\n"
	      "  -h, --help          this text\n"
	      "  -V, --version       the version\n"
	      "\n"
	      "Exit status: 0 done, 1 refused by colofs, 2 usage, 3 mount\n"
	      "unreadable, 4 failover failed, 5 wait timed out.  See\n"
	      "colofsctl(8).\n", fp);
}

static void
die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void
die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("colofsctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* Reads MOUNT/.colo/NAME whole, once; NULL with errno. */
static char *
read_colo_once(const char *name, size_t *len)
{
	char path[4096], *buf;
	size_t n = 0;
	ssize_t r;
	int fd;

	snprintf(path, sizeof path, "%s/.colo/%s", mount, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return NULL;
	buf = malloc(STATUS_MAX + 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	while (n < STATUS_MAX) {
		r = read(fd, buf + n, STATUS_MAX - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			int saved = errno;

			free(buf);
			close(fd);
			errno = saved;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* Reads MOUNT/.colo/NAME whole; NULL with errno.  ESTALE: the file was
 * opened under one colofs process and read under the next (a live
 * restart between the open and a read, e.g. while "restart" polls the
 * status, and always from a colofs older than this one): the text died
 * with the old process, so read it again from a new open.
 */
static char *
read_colo(const char *name, size_t *len)
{
	char *buf;
	int i;

	for (i = 0; i < 5; i++) {
		buf = read_colo_once(name, len);
		if (buf != NULL || errno != ESTALE)
			break;
	}
	return buf;
}

static void
mount_error(const char *what)
{
	if (errno == ENOTCONN)
		die(EXIT_MOUNT, "%s: the colofs daemon of %s is gone (dead "
		    "mount; fusermount3 -u %s)", what, mount, mount);
	if (errno == ENOENT)
		die(EXIT_MOUNT, "%s/.colo/%s: no such file: is %s a colofs "
		    "mount?", mount, what, mount);
	die(EXIT_MOUNT, "%s/.colo/%s: %s", mount, what, strerror(errno));
}

static void
status_free(struct status *st)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		free(st->kv[i].prefix);
	free(st->kv);
	free(st->text);
	st->kv = NULL;
	st->text = NULL;
	st->n = 0;
}

static const char *
status_get(const struct status *st, const char *key)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		if (strcmp(st->kv[i].key, key) == 0)
			return st->kv[i].value;
	return NULL;
}

/* Reads and splits the status; exits on failure. */
static void
status_read(struct status *st)
{
	char *line, *next, *eq, *dot;
	size_t cap = 0, len;

	memset(st, 0, sizeof *st);
	st->text = read_colo("status", &len);
	if (!st->text)
		mount_error("status");
	/* STATUS_MAX bytes: more may follow; the last line may be cut. */
	if (len == STATUS_MAX) {
		char *nl = strrchr(st->text, '\n');

		st->truncated = true;
		*(nl ? nl + 1 : st->text) = '\0';
	}
	for (line = st->text; *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		else
			next = line + strlen(line);
		eq = strchr(line, '=');
		if (!eq || eq == line)
			continue;
		*eq = '\0';
		if (st->n == cap) {
			cap = cap ? 2 * cap : 64;
			st->kv = realloc(st->kv, cap * sizeof *st->kv);
			if (!st->kv)
				die(EXIT_MOUNT, "out of memory");
		}
		st->kv[st->n].key = line;
		st->kv[st->n].value = eq + 1;
		st->kv[st->n].prefix = NULL;
		st->kv[st->n].name = line;
		dot = strrchr(line, '.');
		if (dot && dot != line && dot[1]) {
			st->kv[st->n].prefix = strndup(line, (size_t)(dot - line));
			if (!st->kv[st->n].prefix)
				die(EXIT_MOUNT, "out of memory");
			st->kv[st->n].name = dot + 1;
		}
		st->n++;
	}
}

/* A disk's prefix has a PREFIX.size line (every disk has one). */
static bool
is_disk(const struct status *st, const char *prefix)
{
	char key[512];

	snprintf(key, sizeof key, "%s.size", prefix);
	return status_get(st, key) != NULL;
}

/* JSON output, built with jansson so that it is strict RFC 8259 whatever
 * the status holds:
 *   - a value is a number only if it has a JSON number's syntax and fits:
 *     an integer in an int64, anything else (fraction, exponent) in a
 *     finite double; otherwise (1e999, NaN, 2^64) it is a string;
 *   - a byte sequence that is not UTF-8, in a key or a value, becomes
 *     U+FFFD, and the object says so in "_encoding";
 *   - at most JSON_MAX_KEYS members in all; past them, "truncated": true,
 *     as when the status was longer than STATUS_MAX.
 */
#define JSON_MAX_KEYS 65536

struct jctx {
	size_t nkeys;
	bool replaced;		/* some invalid UTF-8 became U+FFFD */
	bool truncated;
};

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0.
 */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

/* s as valid UTF-8 (malloc'd), each invalid byte replaced by U+FFFD. */
static char *
utf8_clean(const char *s, struct jctx *cx)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(3 * strlen(s) + 1), *o = out;

	if (!out)
		die(EXIT_MOUNT, "out of memory");
	while (*p) {
		size_t n = utf8_len(p);

		if (n == 0) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			p++;
			cx->replaced = true;
			continue;
		}
		memcpy(o, p, n);
		o += n;
		p += n;
	}
	*o = '\0';
	return out;
}

/* Whether s has RFC 8259's number syntax; *integer: no fraction, no
 * exponent.
 */
static bool
json_number_syntax(const char *s, bool *integer)
{
	*integer = true;
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (*s >= '0' && *s <= '9')
			s++;
	else
		return false;
	if (*s == '.') {
		*integer = false;
		s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		*integer = false;
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

static json_t *
json_value(const char *v, struct jctx *cx)
{
	bool integer;
	char *end, *clean;
	json_t *j;

	if (json_number_syntax(v, &integer)) {
		errno = 0;
		if (integer) {
			long long n = strtoll(v, &end, 10);

			if (errno == 0 && *end == '\0')
				return json_integer(n);
		} else {
			double d = strtod(v, &end);

			if (errno == 0 && *end == '\0' && isfinite(d))
				return json_real(d);
		}
	}
	clean = utf8_clean(v, cx);
	j = json_string(clean);
	free(clean);
	return j;
}

/* obj[key] = v (taken), unless JSON_MAX_KEYS members exist already. */
static void
json_put(json_t *obj, const char *key, json_t *v, struct jctx *cx)
{
	char *k;

	if (!v)
		die(EXIT_MOUNT, "out of memory");
	if (cx->nkeys >= JSON_MAX_KEYS) {
		cx->truncated = true;
		json_decref(v);
		return;
	}
	cx->nkeys++;
	k = utf8_clean(key, cx);
	if (json_object_set_new(obj, k, v) == -1)
		die(EXIT_MOUNT, "out of memory");
	free(k);
}

/* Whether an earlier line had this prefix (so its group is printed). */
static bool
seen_prefix(const struct status *st, size_t upto, const char *prefix)
{
	size_t i;

	for (i = 0; i < upto; i++)
		if (st->kv[i].prefix && strcmp(st->kv[i].prefix, prefix) == 0)
			return true;
	return false;
}

static json_t *
json_group(const struct status *st, const char *prefix, json_t *obj,
	   struct jctx *cx)
{
	size_t i;

	if (!obj)
		die(EXIT_MOUNT, "out of memory");
	for (i = 0; i < st->n; i++)
		if (st->kv[i].prefix && strcmp(st->kv[i].prefix, prefix) == 0)
			json_put(obj, st->kv[i].name,
				 json_value(st->kv[i].value, cx), cx);
	return obj;
}

static int
print_json(const struct status *st)
{
	struct jctx cx = { .truncated = st->truncated };
	json_t *root = json_object(), *disks = json_array();
	char *clean;
	size_t i;
	int rc;

	if (!root || !disks)
		die(EXIT_MOUNT, "out of memory");
	clean = utf8_clean(mount, &cx);		/* a string, always */
	json_put(root, "mount", json_string(clean), &cx);
	free(clean);
	for (i = 0; i < st->n; i++)
		if (!st->kv[i].prefix && strcmp(st->kv[i].key, "disks") != 0)
			json_put(root, st->kv[i].key,
				 json_value(st->kv[i].value, &cx), &cx);
	for (i = 0; i < st->n; i++) {
		const char *p = st->kv[i].prefix;
		json_t *d;

		if (!p || !is_disk(st, p) || seen_prefix(st, i, p))
			continue;
		if (cx.nkeys >= JSON_MAX_KEYS) {
			cx.truncated = true;
			break;
		}
		d = json_object();
		if (!d)
			die(EXIT_MOUNT, "out of memory");
		json_put(d, "name", json_value(p, &cx), &cx);
		if (json_array_append_new(disks, json_group(st, p, d, &cx)))
			die(EXIT_MOUNT, "out of memory");
	}
	json_put(root, "disks", disks, &cx);
	for (i = 0; i < st->n; i++) {
		const char *p = st->kv[i].prefix;

		if (!p || is_disk(st, p) || seen_prefix(st, i, p))
			continue;
		json_put(root, p, json_group(st, p, json_object(), &cx), &cx);
	}
	/* These two go in even past JSON_MAX_KEYS: they say what happened. */
	if (cx.replaced)
		json_object_set_new(root, "_encoding", json_string(
			"invalid UTF-8 in the status was replaced by U+FFFD"));
	if (cx.truncated)
		json_object_set_new(root, "truncated", json_true());
	rc = json_dumpf(root, stdout, JSON_COMPACT);
	json_decref(root);
	if (rc == -1 || putchar('\n') == EOF)
		return -1;
	return 0;
}

static uint64_t
num(const struct status *st, const char *key)
{
	const char *v = status_get(st, key);

	return v ? strtoull(v, NULL, 10) : 0;
}

static const char *
human_bytes(uint64_t b, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	size_t u = 0;

	while (v >= 1024 && u < sizeof unit / sizeof unit[0] - 1) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", b);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

/* "error: MSG (raised TIME)" if there is a current error. */
static void
print_error(const struct status *st)
{
	const char *err = status_get(st, "error");
	const char *at = status_get(st, "error_time");

	if (err && *err)
		printf("error: %s%s%s%s\n", err, at && *at ? " (raised " : "",
		       at && *at ? at : "", at && *at ? ")" : "");
}

/* Every group but the disks (nbd: ...) as key value lines. */
static void
print_groups(const struct status *st)
{
	size_t i, j;

	for (i = 0; i < st->n; i++) {
		const char *p = st->kv[i].prefix;

		if (!p || is_disk(st, p) || seen_prefix(st, i, p))
			continue;
		printf("\n%s:\n", p);
		for (j = i; j < st->n; j++)
			if (st->kv[j].prefix &&
			    strcmp(st->kv[j].prefix, p) == 0)
				printf("  %-22s %s\n", st->kv[j].name,
				       st->kv[j].value);
	}
}

/* The primary's last columns: is the bitmap in sync with the secondary,
 * and which one.
 */
static void
primary_tail(const struct status *st, const char *disk)
{
	char key[512];

	if (disk == NULL) {
		printf("  %-6s %s", "synced", "secondary");
		return;
	}
	snprintf(key, sizeof key, "%s.synced", disk);
	printf("  %-6s", num(st, key) ? "yes" : "no");
	snprintf(key, sizeof key, "%s.secondary", disk);
	printf(" %s", status_get(st, key) ?: "?");
}

/* The disks as a table: the heads, then a row per disk of its cols in
 * bytes, width wide; tail (if not NULL) adds the last columns (disk NULL:
 * their heads).
 */
static void
print_disks(const struct status *st, const char *const *heads,
	    const char *const *cols, size_t ncols, int width,
	    void (*tail)(const struct status *st, const char *disk))
{
	char b1[32], key[512];
	size_t i, c;

	printf("\n%-12s", "disk");
	for (c = 0; c < ncols; c++)
		printf(" %*s", width, heads[c]);
	if (tail)
		tail(st, NULL);
	putchar('\n');
	for (i = 0; i < st->n; i++) {
		const char *p = st->kv[i].prefix;

		if (!p || !is_disk(st, p) || seen_prefix(st, i, p))
			continue;
		printf("%-12s", p);
		for (c = 0; c < ncols; c++) {
			snprintf(key, sizeof key, "%s.%s", p, cols[c]);
			printf(" %*s", width, human_bytes(num(st, key), b1,
							  sizeof b1));
		}
		if (tail)
			tail(st, p);
		putchar('\n');
	}
}

/* A primary: its state, the dirty bytes, the sync's progress with an ETA
 * while it runs, why it degraded, then a table of the disks (dirty,
 * written, mirrored, sent on the link, the secondary).
 */
static void
print_primary(const struct status *st)
{
	static const char *const cols[] = {
		"size", "dirty_bytes", "write_bytes", "mirrored_bytes",
		"link_bytes",
	};
	static const char *const heads[] = {
		"size", "dirty", "VM wrote", "mirrored", "link sent",
	};
	const char *state = status_get(st, "state") ?: "?";
	const char *reason = status_get(st, "degraded_reason");
	uint64_t total = num(st, "sync_total_bytes");
	uint64_t done = num(st, "sync_done_bytes");
	uint64_t left = num(st, "sync_left_bytes");
	uint64_t rate = num(st, "sync_rate_bytes");
	char b1[32], b2[32], b3[32];

	printf("%s: primary, state %s, dirty %s (%s granules), %" PRIu64
	       " checkpoint%s, %" PRIu64 " sync%s\n", mount, state,
	       human_bytes(num(st, "dirty_bytes"), b1, sizeof b1),
	       human_bytes(num(st, "dirty_granularity"), b2, sizeof b2),
	       num(st, "checkpoints"), num(st, "checkpoints") == 1 ? "" : "s",
	       num(st, "syncs"), num(st, "syncs") == 1 ? "" : "s");
	if (strcmp(state, "syncing") == 0) {
		printf("sync: %s of %s (%d%%), %s/s, ",
		       human_bytes(done, b1, sizeof b1),
		       human_bytes(total, b2, sizeof b2),
		       total ? (int)(100 * done / total) : 0,
		       human_bytes(rate, b3, sizeof b3));
		if (rate)
			printf("ETA %.1f s\n", (double)left / (double)rate);
		else
			puts("ETA unknown");
	} else if (total) {
		printf("last sync: %s at %s/s\n",
		       human_bytes(done, b1, sizeof b1),
		       human_bytes(rate, b2, sizeof b2));
	}
	if (reason && *reason)
		printf("degraded: %s\n", reason);
	print_error(st);
	print_disks(st, heads, cols, sizeof cols / sizeof cols[0], 12,
		    primary_tail);
	print_groups(st);
}

/* The human form: the secondary's line, the disks as a table, then every
 * other group as key value lines.  A primary has its own (above).
 */
static void
print_human(const struct status *st)
{
	static const char *const cols[] = {
		"size", "hidden_bytes", "active_bytes",
		"commit_remaining_bytes", "primary_write_bytes",
		"view_write_bytes",
	};
	static const char *const heads[] = {
		"size", "hidden", "active", "to commit", "primary wrote",
		"view wrote",
	};
	const char *mode = status_get(st, "mode");
	char b1[32], b2[32];

	if (mode && strcmp(mode, "primary") == 0) {
		print_primary(st);
		return;
	}
	printf("%s: state %s, %" PRIu64 " checkpoint%s (last %.3f ms), "
	       "buffered %s", mount, status_get(st, "state") ?: "?",
	       num(st, "checkpoints"), num(st, "checkpoints") == 1 ? "" : "s",
	       num(st, "last_checkpoint_us") / 1000.0,
	       human_bytes(num(st, "buffer_bytes"), b1, sizeof b1));
	if (num(st, "buffer_limit"))
		printf(" of %s", human_bytes(num(st, "buffer_limit"), b2,
					     sizeof b2));
	if (num(st, "buffer_retained_bytes"))
		printf(", %s kept for reuse",
		       human_bytes(num(st, "buffer_retained_bytes"), b2,
				   sizeof b2));
	if (num(st, "buffer_warming_bytes"))
		printf(", %s still warming",
		       human_bytes(num(st, "buffer_warming_bytes"), b2,
				   sizeof b2));
	putchar('\n');
	print_error(st);
	print_disks(st, heads, cols, sizeof cols / sizeof cols[0], 14, NULL);
	print_groups(st);
	printf("\nmode %s, buffer %s, unclean disconnects %" PRIu64
	       ", errors %" PRIu64 "\n", status_get(st, "mode") ?: "?",
	       status_get(st, "buffer") ?: "?",
	       num(st, "unclean_disconnects"), num(st, "errors"));
}

static int
cmd_status(bool json)
{
	struct status st;

	status_read(&st);
	if (json) {
		if (print_json(&st) == -1) {
			status_free(&st);
			return EXIT_MOUNT;
		}
	} else
		print_human(&st);
	status_free(&st);
	return fflush(stdout) == EOF ? EXIT_MOUNT : EXIT_OK;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_watch = 1;
}

static void
sleep_seconds(double s)
{
	struct timespec ts = {
		.tv_sec = (time_t)s,
		.tv_nsec = (long)((s - (double)(time_t)s) * 1e9),
	};

	nanosleep(&ts, NULL);	/* a signal cuts it short: fine */
}

/* As watch(1) would show status: cleared and redrawn on a terminal,
 * one block after another otherwise, until a signal.
 */
static int
cmd_watch(double interval)
{
	struct sigaction sa;
	bool tty = isatty(STDOUT_FILENO);
	char when[64];
	time_t now;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	while (!stop_watch) {
		struct status st;

		status_read(&st);
		now = time(NULL);
		strftime(when, sizeof when, "%F %T", localtime(&now));
		if (tty)
			fputs("\033[H\033[2J", stdout);
		printf("Every %.1fs: colofsctl status  %s\n\n", interval, when);
		print_human(&st);
		if (!tty)
			putchar('\n');
		status_free(&st);
		if (fflush(stdout) == EOF)
			return EXIT_MOUNT;
		sleep_seconds(interval);
	}
	return EXIT_OK;
}

/* One write() of the word: colofs runs it and answers the write. */
static int
send_word(const char *word)
{
	char path[4096], buf[1100], *err;
	ssize_t n;
	int fd, e;

	snprintf(path, sizeof path, "%s/.colo/ctl", mount);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd == -1)
		mount_error("ctl");
	n = snprintf(buf, sizeof buf, "%s\n", word);
	if (n >= (ssize_t)sizeof buf)
		die(EXIT_USAGE, "%.40s...: too long for one ctl write", word);
	if (write(fd, buf, (size_t)n) == n) {
		close(fd);
		return EXIT_OK;
	}
	e = errno;
	close(fd);
	if (e == ENOTCONN) {
		errno = e;
		mount_error("ctl");
	}
	err = read_colo("error", NULL);
	if (err)
		err[strcspn(err, "\n")] = '\0';
	fprintf(stderr, "colofsctl: %s refused: %s (%s)\n", word,
		err && *err ? err : "no reason given", strerror(e));
	free(err);
	return EXIT_REFUSED;
}

static uint64_t
commit_remaining(const struct status *st)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < st->n; i++)
		if (st->kv[i].prefix &&
		    strcmp(st->kv[i].name, "commit_remaining_bytes") == 0 &&
		    is_disk(st, st->kv[i].prefix))
			sum += strtoull(st->kv[i].value, NULL, 10);
	return sum;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* restart: the word, then the status until another pid serves (the
 * status of the new process; reads in between wait in the kernel).
 */
static int
cmd_restart(void)
{
	struct status st;
	char old[32];
	const char *pid;
	double t0 = now_s();
	int ret;

	status_read(&st);
	pid = status_get(&st, "pid");
	snprintf(old, sizeof old, "%s", pid ? pid : "");
	status_free(&st);
	ret = send_word("restart");
	if (ret != EXIT_OK)
		return ret;
	while (now_s() - t0 < 120) {
		status_read(&st);
		pid = status_get(&st, "pid");
		if (pid && strcmp(pid, old) != 0) {
			printf("restart: pid %s -> %s, serving after %s ms "
			       "(%s restarts)\n", old, pid,
			       status_get(&st, "last_restart_ms") ?
			       status_get(&st, "last_restart_ms") : "?",
			       status_get(&st, "restarts") ?
			       status_get(&st, "restarts") : "?");
			status_free(&st);
			return EXIT_OK;
		}
		status_free(&st);
		sleep_seconds(0.05);
	}
	fprintf(stderr, "colofsctl: restart: pid %s still serves after "
		"120 s\n", old);
	return EXIT_REFUSED;
}

/* Follows the commit until done or failover_failed: a bar with bytes and
 * rate on a terminal, a line a second otherwise.  The total is the most
 * the status has shown left to commit; buffered (bytes in the buffers
 * before the failover) is for the last line.
 */
static int
wait_failover(uint64_t buffered)
{
	bool tty = isatty(STDOUT_FILENO);
	double t0 = now_s(), last_line = -1, t;
	uint64_t total = 0, left;
	char b1[32], b2[32], b3[32];
	const char *state;
	int ret;

	for (;;) {
		struct status st;

		status_read(&st);
		state = status_get(&st, "state");
		left = commit_remaining(&st);
		if (left > total)
			total = left;
		t = now_s() - t0;
		if (state && strcmp(state, "failover") != 0) {
			if (strcmp(state, "done") == 0) {
				printf("%sfailover: done in %.1f s (%s were "
				       "buffered)\n", tty ? "\r\033[K" : "", t,
				       human_bytes(buffered, b1, sizeof b1));
				ret = EXIT_OK;
			} else {
				const char *e = status_get(&st, "error");

				if (tty)
					fputs("\r\033[K", stdout);
				fflush(stdout);
				fprintf(stderr, "colofsctl: failover ended in "
					"state %s: %s\n", state,
					e && *e ? e : "no reason given");
				ret = strcmp(state, "failover_failed") == 0 ?
				      EXIT_FAILOVER_FAILED : EXIT_REFUSED;
			}
			status_free(&st);
			return ret;
		}
		status_free(&st);
		{
			double rate = t > 0 ? (double)(total - left) / t : 0;
			int pct = total ? (int)(100 * (total - left) / total) : 0;

			human_bytes(total - left, b1, sizeof b1);
			human_bytes(total, b2, sizeof b2);
			human_bytes((uint64_t)rate, b3, sizeof b3);
			if (tty) {
				char bar[31];
				int k, fill = pct * 30 / 100;

				for (k = 0; k < 30; k++)
					bar[k] = k < fill ? '#' : '.';
				bar[30] = '\0';
				printf("\r\033[Kfailover: [%s] %3d%% %s of %s, "
				       "%s/s", bar, pct, b1, b2, b3);
				fflush(stdout);
			} else if (last_line < 0 || t - last_line >= 1) {
				printf("failover: %d%% committed, %s of %s, "
				       "%s/s\n", pct, b1, b2, b3);
				fflush(stdout);
				last_line = t;
			}
		}
		sleep_seconds(0.1);
	}
}

/* Polls the status until state is want (exit 0), or timeout seconds
 * passed (exit 5; timeout 0: none).
 */
static int
cmd_wait(const char *want, double timeout)
{
	double t0 = now_s();
	char last[64] = "?";

	for (;;) {
		struct status st;
		const char *state;
		bool there;

		status_read(&st);
		state = status_get(&st, "state");
		there = state && strcmp(state, want) == 0;
		snprintf(last, sizeof last, "%s", state ? state : "?");
		status_free(&st);
		if (there)
			return EXIT_OK;
		if (timeout > 0 && now_s() - t0 >= timeout) {
			fprintf(stderr, "colofsctl: wait %s: timed out after "
				"%.1f s in state %s\n", want, timeout, last);
			return EXIT_TIMEOUT;
		}
		sleep_seconds(0.1);
	}
}

static int
cmd_errors(void)
{
	char *text = read_colo("errors", NULL);

	if (!text)
		mount_error("errors");
	fputs(text, stdout);
	free(text);
	return fflush(stdout) == EOF ? EXIT_MOUNT : EXIT_OK;
}

/* "resync" or "protect" and its arguments as one ctl word line. */
static int
cmd_words(const char *cmd, int argc, char **argv)
{
	char word[1100];
	size_t n = 0;
	int i;

	n = (size_t)snprintf(word, sizeof word, "%s", cmd);
	for (i = 0; i < argc && n < sizeof word; i++)
		n += (size_t)snprintf(word + n, sizeof word - n, " %s",
				      argv[i]);
	if (n >= sizeof word)
		die(EXIT_USAGE, "%s: arguments too long", cmd);
	return send_word(word);
}

/* colofsctl journal FILE: 0 and the records on stdout, or 1 and what is
 * wrong on stderr.
 */
static int
cmd_journal(const char *path)
{
	char *copy = strdup(path), *slash, err[512];
	const char *dir = ".", *name = path;
	struct journal_info info;
	int dirfd;
	size_t i;

	if (copy == NULL)
		die(EXIT_REFUSED, "%s", strerror(errno));
	slash = strrchr(copy, '/');
	if (slash) {
		*slash = '\0';
		dir = slash == copy ? "/" : copy;
		name = slash + 1;
	}
	dirfd = fdio_dir_open(dir);
	if (dirfd == -1)
		die(EXIT_REFUSED, "%s: %s", dir, strerror(errno));
	if (journal_load(dirfd, name, NULL, 0, &info, NULL, err,
			 sizeof err) == -1)
		die(EXIT_REFUSED, "%s: %s", path, err);
	close(dirfd);
	printf("journal %s\nversion %d\ndisk %s\nsize %" PRIu64 "\n"
	       "generation %016" PRIx64 "\nsalt %016" PRIx64 "\n"
	       "records %zu (snapshot %zu, appended %zu)%s\n", path,
	       JOURNAL_VERSION, info.disk, info.size, info.generation,
	       info.salt, info.nrecs, info.nsnap, info.nrecs - info.nsnap,
	       info.torn ? ", a torn last record ignored" : "");
	for (i = 0; i < info.nrecs; i++) {
		if (i == info.nsnap)
			printf("end %zu\n", info.nsnap);
		printf("%c %" PRIu64 " %" PRIu64 "\n", info.recs[i].op,
		       info.recs[i].off, info.recs[i].len);
	}
	if (info.nrecs == info.nsnap)
		printf("end %zu\n", info.nsnap);
	journal_info_release(&info);
	free(copy);
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mount", required_argument, NULL, 'm' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *cmd;
	struct config *cfg = NULL;
	bool json = false, wait = false, force = false, timeout_set = false;
	double interval = 1.0, timeout = 0;
	const char *want = NULL;
	int cmd_argc = 0;
	char **cmd_argv = NULL;
	char err[1024], *end;
	int c, ret;


	/* "+": options after the command are the command's. */
	while ((c = getopt_long(argc, argv, "+m:c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mount = optarg; break;
		case 'c': config = optarg; break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("colofsctl %s\n", COLOFS_VERSION); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "journal") == 0) {
		if (optind + 1 != argc)
			die(EXIT_USAGE, "journal: give one FILE");
		log_set_quiet(true);
		return cmd_journal(argv[optind]);
	}
	/* The command's own arguments: resync's and protect's words, wait's
	 * state.
	 */
	if (strcmp(cmd, "resync") == 0 || strcmp(cmd, "protect") == 0) {
		cmd_argc = argc - optind;
		cmd_argv = argv + optind;
		optind = argc;
	} else if (strcmp(cmd, "wait") == 0) {
		size_t k;

		if (optind >= argc)
			die(EXIT_USAGE, "wait: which state?");
		want = argv[optind++];
		for (k = 0; k < sizeof states / sizeof states[0]; k++)
			if (strcmp(want, states[k]) == 0)
				break;
		if (k == sizeof states / sizeof states[0])
			die(EXIT_USAGE, "wait %s: not a state (none, running, "
			    "failover, failover_failed, done, syncing, "
			    "replicating, degraded)", want);
	}
	/* The command's own options. */
	for (; optind < argc; optind++) {
		const char *o = argv[optind];

		if (strcmp(o, "--timeout") == 0 && optind + 1 < argc) {
			o = argv[++optind];
			timeout = strtod(o, &end);
			if (end == o || *end || !(timeout > 0))
				die(EXIT_USAGE, "--timeout %s: want seconds "
				    "above 0", o);
			timeout_set = true;
		} else if (strcmp(o, "--json") == 0)
			json = true;
		else if (strcmp(o, "--wait") == 0)
			wait = true;
		else if (strcmp(o, "--force") == 0)
			force = true;
		else if ((strcmp(o, "-n") == 0 || strcmp(o, "--interval") == 0)
			 && optind + 1 < argc) {
			o = argv[++optind];
			interval = strtod(o, &end);
			if (end == o || *end || !(interval >= 0.1 &&
						  interval <= 3600))
				die(EXIT_USAGE, "-n %s: want seconds from 0.1 "
				    "to 3600", o);
		} else
			die(EXIT_USAGE, "%s: unknown argument '%s' (see "
			    "colofsctl --help)", cmd, o);
	}
	if (mount && config)
		die(EXIT_USAGE, "-m and -c: give one");
	if (config) {
		cfg = config_load(config, err, sizeof err);
		if (!cfg)
			die(EXIT_USAGE, "%s", err);
		mount = cfg->mountpoint;
	}
	if (!mount)
		die(EXIT_USAGE, "which mount? give -m MOUNT or -c CONFIG");
	if ((json && strcmp(cmd, "status") != 0) ||
	    (wait && strcmp(cmd, "failover") != 0) ||
	    (timeout_set && strcmp(cmd, "wait") != 0) ||
	    (force && strcmp(cmd, "start") != 0) ||
	    (interval != 1.0 && strcmp(cmd, "watch") != 0))
		die(EXIT_USAGE, "%s: option not for this command", cmd);

	if (strcmp(cmd, "status") == 0)
		ret = cmd_status(json);
	else if (strcmp(cmd, "watch") == 0)
		ret = cmd_watch(interval);
	else if (strcmp(cmd, "start") == 0 || strcmp(cmd, "checkpoint") == 0 ||
		 strcmp(cmd, "stop") == 0)
		ret = send_word(force ? "start force" : cmd);
	else if (strcmp(cmd, "resync") == 0 || strcmp(cmd, "protect") == 0)
		ret = cmd_words(cmd, cmd_argc, cmd_argv);
	else if (strcmp(cmd, "wait") == 0)
		ret = cmd_wait(want, timeout);
	else if (strcmp(cmd, "errors") == 0)
		ret = cmd_errors();
	else if (strcmp(cmd, "failover") == 0) {
		struct status st;
		uint64_t buffered;

		const char *state, *mode;
		bool promoted, primary;

		status_read(&st);
		buffered = num(&st, "buffer_bytes");
		state = status_get(&st, "state");
		mode = status_get(&st, "mode");
		primary = mode && strcmp(mode, "primary") == 0;
		promoted = state && (strcmp(state, "failover") == 0 ||
				     strcmp(state, "done") == 0);
		status_free(&st);
		/* A primary's failover is over when the word returns: it
		 * drops the links and stays in failover.
		 */
		if (primary)
			wait = false;
		/* --wait is for reaching done: once the word was taken
		 * (colofs refuses it again with EBUSY), just wait.
		 */
		if (wait && promoted) {
			ret = wait_failover(buffered);
		} else {
			ret = send_word(cmd);
			if (ret == EXIT_OK && wait)
				ret = wait_failover(buffered);
			else if (ret == EXIT_OK && primary)
				puts("failover: done (the primary tracks "
				     "writes for a resync)");
		}
	} else if (strcmp(cmd, "restart") == 0) {
		ret = cmd_restart();
	} else {
		fprintf(stderr, "colofsctl: unknown command '%s'\n", cmd);
		usage(stderr);
		ret = EXIT_USAGE;
	}
	config_free(cfg);
	return ret;
}
