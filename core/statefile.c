/* SPDX-License-Identifier: MIT */
/* The state file: what colofs must remember across a crash or a restart.
 *
 * A promoted secondary (state done) must stay fenced from its old primary
 * however often it restarts, and a failover commit cut short by a crash
 * must be finished, not forgotten.  So the daemon keeps one small text
 * file per deployment:
 *
 *   colofs-state 1
 *   state=failover
 *   generation=5f0c...		32 hex digits, new at each start (but a
 *				planned restart's) and failover
 *   journaled=1			the commit's journals are durable (running:
 *				the handed-over buffers'; none: a planned
 *				restart keeps the generation)
 *   protect=nbd://...		only in done: protected in place, this
 *				process is a primary mirroring to that URI
 *   s_consistent=0		S may be behind the primary (a restart after
 *				running, until a primary connects); absent: 1
 *   gi_current=0123456789abcdef	generation identifiers (gi.h): the
 *   gi_since=1700000000		current one, when it began, and the
 *   gi_history=H0,H1,H2,H3	last GI_HISTORY (16 hex digits each)
 *
 * It is only ever replaced whole (durable_write, core/fdio.c): written to
 * a fresh NAME.tmp.XXXXXX, fsync'd, renamed over NAME, and the directory
 * fsync'd, so that after a crash or a power cut the file is either the old
 * one or the new one, never a mix, and a rename that returned is not
 * undone.  A leftover NAME.tmp.* is ignored.
 *
 * Reading is strict: a file that is not exactly this format is an error,
 * never a default, because guessing "none" for a promoted disk would open
 * it to the old primary.  The policy (what each state means at start-up)
 * is the daemon's (fs/main.c); this file only stores and parses.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "statefile.h"

#define STATEFILE_MAX 4096
#define MAGIC "colofs-state 1\n"

/* One gi_ key of the state file into g. */
static int
parse_gi(const char *key, const char *v, struct gi_set *g)
{
	char *end;
	long long since;

	if (strcmp(key, "gi_current") == 0)
		return gi_parse_id(v, &g->current);
	if (strcmp(key, "gi_history") == 0)
		return gi_parse_history(v, g->history);
	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	since = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	g->since = since;
	return 0;
}

static int
bad(char *err, size_t errlen, const char *path, const char *why)
{
	snprintf(err, errlen, "state file %s: %s", path, why);
	errno = EINVAL;
	return -1;
}

int
statefile_read(const char *path, struct statefile *sf, char *err,
	       size_t errlen)
{
	char buf[STATEFILE_MAX + 1], *line, *save = NULL, why[256];
	bool have_state = false, have_gen = false;
	ssize_t n;
	int fd;

	memset(sf, 0, sizeof *sf);
	/* Not by path: no link followed, and only a file root (or our
	 * user) owns and alone can write is obeyed (fdio_open_own).
	 */
	fd = fdio_open_own(path, O_RDONLY, why, sizeof why);
	if (fd == -1) {
		int saved = errno;

		if (saved == ENOENT)
			return 1;
		snprintf(err, errlen, "state file %s: %s", path, why);
		errno = saved;
		return -1;
	}
	n = read(fd, buf, sizeof buf);
	if (n == -1) {
		int saved = errno;

		close(fd);
		snprintf(err, errlen, "state file %s: %s", path,
			 strerror(saved));
		errno = saved;
		return -1;
	}
	close(fd);
	if (n > STATEFILE_MAX)
		return bad(err, errlen, path, "longer than 4096 bytes");
	buf[n] = '\0';
	if (strlen(buf) != (size_t) n)
		return bad(err, errlen, path, "holds a NUL byte");
	if (strncmp(buf, MAGIC, strlen(MAGIC)) != 0)
		return bad(err, errlen, path, "does not begin with "
			   "\"colofs-state 1\"");
	if (n == 0 || buf[n - 1] != '\n')
		return bad(err, errlen, path, "does not end with a newline");
	for (line = strtok_r(buf + strlen(MAGIC), "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, '=');

		if (v == NULL)
			return bad(err, errlen, path, "a line is not key=value");
		*v++ = '\0';
		if (strcmp(line, "state") == 0) {
			if (secondary_state_parse(v, &sf->state) == -1)
				return bad(err, errlen, path, "unknown state");
			have_state = true;
		} else if (strcmp(line, "generation") == 0) {
			if (strlen(v) != STATEFILE_GEN_LEN ||
			    strspn(v, "0123456789abcdef") != STATEFILE_GEN_LEN)
				return bad(err, errlen, path,
					   "generation is not 32 hex digits");
			memcpy(sf->generation, v, STATEFILE_GEN_LEN + 1);
			have_gen = true;
		} else if (strcmp(line, "journaled") == 0) {
			if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
				return bad(err, errlen, path,
					   "journaled is not 0 or 1");
			sf->journaled = v[0] == '1';
		} else if (strcmp(line, "protect") == 0) {
			if (strlen(v) >= sizeof sf->protect ||
			    strstr(v, "://") == NULL)
				return bad(err, errlen, path,
					   "protect is not a URI");
			snprintf(sf->protect, sizeof sf->protect, "%s", v);
		} else if (strcmp(line, "gi_current") == 0 ||
			   strcmp(line, "gi_since") == 0 ||
			   strcmp(line, "gi_history") == 0) {
			char what[64];

			snprintf(what, sizeof what, "%s is malformed", line);
			if (parse_gi(line, v, &sf->gi) == -1)
				return bad(err, errlen, path, what);
		} else if (strcmp(line, "s_consistent") == 0) {
			if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
				return bad(err, errlen, path,
					   "s_consistent is not 0 or 1");
			sf->s_behind = v[0] == '0';
		}
		/* Unknown keys: a newer colofs wrote them; keep going. */
	}
	if (!have_state || !have_gen)
		return bad(err, errlen, path, "state or generation missing");
	return 0;
}

int
statefile_write(const char *dir, const char *name, const struct statefile *sf)
{
	char buf[512 + STATEFILE_URI_MAX], hist[GI_HISTORY * 17];
	int n, ret;

	gi_format_history(sf->gi.history, hist, sizeof hist);
	n = snprintf(buf, sizeof buf, MAGIC "state=%s\ngeneration=%s\n"
		     "journaled=%d\ns_consistent=%d\ngi_current=%016" PRIx64
		     "\ngi_since=%" PRId64 "\ngi_history=%s\n%s%s%s",
		     secondary_state_name(sf->state), sf->generation,
		     sf->journaled ? 1 : 0, sf->s_behind ? 0 : 1,
		     sf->gi.current, sf->gi.since, hist,
		     sf->protect[0] ? "protect=" : "", sf->protect,
		     sf->protect[0] ? "\n" : "");
	ret = durable_write(dir, name, buf, (size_t) n);
	/* Renamed, not synced: written all the same; retry the sync. */
	if (ret == 1 && durable_sync_dir(dir) == 0)
		ret = 0;
	return ret;
}

int
statefile_new_generation(char out[STATEFILE_GEN_LEN + 1])
{
	unsigned char raw[STATEFILE_GEN_LEN / 2];
	size_t i;

	if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw) {
		log_error("getrandom: %m");
		return -1;
	}
	for (i = 0; i < sizeof raw; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}
