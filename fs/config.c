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
#include "config-internal.h"

/* Records an error, one line each: the reader goes on past a bad line
 * (and skips a refused section's keys), so that one run reports every
 * problem.  A second error on the same line is a consequence of the
 * first and is dropped; so is everything past CONFIG_MAX_ERRORS.
 */
#define CONFIG_MAX_ERRORS 20

void
config_fail(struct loader *ld, int line, const char *fmt, ...)
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

void
config_fail_errno(struct loader *ld, int line, int err, const char *what)
{
	bool first = !ld->failed;

	config_fail(ld, line, "%s: %s", what, strerror(err));
	if (first)
		ld->err_errno = err;
}

void
config_bad_value(struct loader *ld, const char *key, const char *v,
	  const char *fmt, ...)
{
	char allowed[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(allowed, sizeof allowed, fmt, ap);
	va_end(ap);
	config_fail(ld, ld->lineno, "bad value for %s: '%s' (%s)", key, v, allowed);
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
		config_fail(ld, ld->lineno, "section header without ']'");
		return -1;
	}
	for (rest = close + 1; rest < s + len && isspace((unsigned char) *rest);
	     rest++)
		;
	if (rest < s + len && *rest != ';' && *rest != '#') {
		config_fail(ld, ld->lineno, "unexpected text after section header");
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
			config_fail(ld, ld->lineno,
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
			    !config_disk_name_ok(name, nlen)) {
				config_fail(ld, ld->lineno,
				     "bad disk name \"%.*s\" (1 to %d of A-Z a-z 0-9 . _ -, not starting with '.')",
				     (int) nlen, name, DISK_NAME_MAX);
				return -1;
			}
			ld->section = SECTION_DISK;
			return config_open_disk(ld, name, nlen);
		}
	}
	config_fail(ld, ld->lineno,
	     "unknown section [%.*s] (expected [colofs] or [disk \"NAME\"])",
	     (int) (in_end - in), in);
	return -1;
}

/* Marks key index k set in this section; a second time is an error. */
int
config_mark_seen(struct loader *ld, struct seen *seen, int k, const char *key,
	  const char *section)
{
	if (seen->mask & (UINT64_C(1) << k)) {
		config_fail(ld, ld->lineno,
		     "duplicate key '%s' in %s (first set on line %d)",
		     key, section, seen->line[k]);
		return -1;
	}
	seen->mask |= UINT64_C(1) << k;
	seen->line[k] = ld->lineno;
	return 0;
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
		config_fail(ld, ld->lineno, "missing key name before '='");
		return 0;
	}
	/* "key =;x" would keep ";x", but "key = ;x" (as --dump-config
	 * writes it) is a comment: such a value cannot round-trip.
	 */
	if (*value == ';') {
		config_fail(ld, ld->lineno, "value of '%s' starts with ';', which "
		     "reads as a comment once spaced out", name);
		return 0;
	}
	switch (ld->section) {
	case SECTION_COLOFS:
		r = config_set_colofs_key(ld, name, value);
		break;
	case SECTION_DISK:
		r = config_set_disk_key(ld, name, value);
		break;
	default:
		config_fail(ld, ld->lineno, "key '%s' outside any section", name);
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
		config_fail(ld, ld->lineno, "NUL byte in line");
		goto blank;
	}
	if (e - line > num - 3) {
		config_fail(ld, ld->lineno, "line too long (%zu characters, at most %d)",
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
			config_fail(ld, ld->lineno,
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

/* Lexically, is path dir itself or inside it?  Trailing slashes aside;
 * symlinks are not followed (the files need not exist yet).
 */
bool
config_path_within(const char *path, const char *dir)
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

bool
config_same_path(const char *a, const char *b)
{
	return config_path_within(a, b) && config_path_within(b, a);
}

static int
finish(struct loader *ld)
{
	struct config *c = ld->c;
	size_t i;

	if (ld->colofs_line == 0) {
		config_fail(ld, 0, "no [colofs] section");
		return -1;
	}
	if (!(ld->colofs_seen.mask & (UINT64_C(1) << CK_mountpoint))) {
		config_fail(ld, 0, "[colofs] mountpoint is required");
		return -1;
	}
	if (config_finish_colofs(ld) == -1)
		return -1;
	for (i = 0; i < c->ndisks; i++) {
		if (config_finish_disk(ld, i) == -1)
			return -1;
	}
	if (c->ndisks == 0) {
		config_fail(ld, 0, "no [disk \"NAME\"] section");
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
	if (config_set_defaults_colofs(&ld, ld.c) == -1)
		goto failed;
	r = ini_parse_stream(reader, &ld, handler, &ld);
	if (!ld.failed && r == -2)
		config_fail_errno(&ld, 0, ENOMEM, "out of memory");
	else if (!ld.failed && r != 0)
		config_fail(&ld, r, "syntax error");	/* the reader should catch all */
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
#define X(key, type, field, def) config_dump_##type(fp, #key, &c->field);
	COLOFS_KEYS(X)
#undef X
	for (i = 0; i < c->ndisks; i++) {
		const struct config_disk *d = &c->disks[i];

		fprintf(fp, "\n[disk \"%s\"]\n", d->name);
#define X(key, type, field, def) config_dump_##type(fp, #key, &d->field);
		DISK_KEYS(X)
#undef X
	}
}
