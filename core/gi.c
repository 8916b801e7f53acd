/* SPDX-License-Identifier: MIT */
/* Generation identifiers: creation, the text form sent in the NBD export
 * description, and the comparison table of gi.h.
 *
 * The text is one line of printable ASCII so that a human reading
 * nbdinfo's output sees it, and so that it fits in the description next
 * to the export's name:
 *
 *   colofs-gi v1 cur=0123456789abcdef since=1700000000 hist=H0,H1,H2,H3
 *
 * with every H 16 hex digits (0000000000000000: empty).  A parser finds
 * it by its "colofs-gi v1 " prefix and rejects anything after it that is
 * not exactly this shape.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gi.h"
#include "log.h"

#define GI_PREFIX "colofs-gi v1 "

const char *
gi_verdict_name(enum gi_verdict v)
{
	switch (v) {
	case GI_UNKNOWN:
		return "unknown-peer";
	case GI_FIRST:
		return "first";
	case GI_SAME:
		return "same";
	case GI_SPLIT_BRAIN:
		return "split-brain";
	case GI_NEW:
		return "new";
	case GI_UNRELATED:
		return "unrelated";
	}
	abort();
}

int
gi_new(struct gi_set *g)
{
	uint64_t id = 0;
	size_t i;

	/* 0 means "none": draw again in the unlikely case. */
	while (id == 0) {
		if (getrandom(&id, sizeof id, 0) != (ssize_t) sizeof id) {
			log_error("getrandom: %m");
			if (errno == 0)
				errno = EIO;
			return -1;
		}
	}
	if (g->current != 0) {
		for (i = GI_HISTORY - 1; i > 0; i--)
			g->history[i] = g->history[i - 1];
		g->history[0] = g->current;
	}
	g->current = id;
	g->since = (int64_t) time(NULL);
	return 0;
}

void
gi_clear_history(struct gi_set *g)
{
	memset(g->history, 0, sizeof g->history);
}

void
gi_format_history(const uint64_t history[GI_HISTORY], char *buf, size_t len)
{
	size_t i, n = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < GI_HISTORY && n < len; i++)
		n += (size_t) snprintf(buf + n, len - n, "%s%016" PRIx64,
				       i ? "," : "", history[i]);
}

void
gi_format(const struct gi_set *g, char *buf, size_t len)
{
	char hist[GI_HISTORY * 17];

	gi_format_history(g->history, hist, sizeof hist);
	snprintf(buf, len,
		 GI_PREFIX "cur=%016" PRIx64 " since=%" PRId64 " hist=%s",
		 g->current, g->since, hist);
}

/* Lower-case hex at *s, up to 16 digits: how many (0: none), the value
 * in *out and *s past them.
 */
static int
hexnum(const char **s, uint64_t *out)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 16; i++) {
		char c = (*s)[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t) (c - 'a' + 10);
		else
			break;
	}
	*s += i;
	*out = v;
	return i;
}

/* 16 lower-case hex digits at *s: the value, and *s past them. */
static int
hex16(const char **s, uint64_t *out)
{
	const char *p = *s;

	if (hexnum(&p, out) != 16)
		return -1;
	*s = p;
	return 0;
}

static int
expect(const char **s, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(*s, word, n) != 0)
		return -1;
	*s += n;
	return 0;
}

static int
history(const char **p, uint64_t out[GI_HISTORY])
{
	size_t i;

	for (i = 0; i < GI_HISTORY; i++)
		if ((i && expect(p, ",") == -1) || hex16(p, &out[i]) == -1)
			return -1;
	return 0;
}

int
gi_parse_id(const char *s, uint64_t *out)
{
	return hex16(&s, out) == -1 || *s != '\0' ? -1 : 0;
}

int
gi_parse_history(const char *s, uint64_t out[GI_HISTORY])
{
	return history(&s, out) == -1 || *s != '\0' ? -1 : 0;
}

int
gi_parse(const char *s, struct gi_set *g)
{
	const char *p;
	char *end;
	long long since;

	memset(g, 0, sizeof *g);
	if (s == NULL || (p = strstr(s, GI_PREFIX)) == NULL)
		return 1;
	p += strlen(GI_PREFIX);
	if (expect(&p, "cur=") == -1 || hex16(&p, &g->current) == -1 ||
	    g->current == 0 || expect(&p, " since=") == -1)
		goto bad;
	if (*p < '0' || *p > '9')
		goto bad;
	errno = 0;
	since = strtoll(p, &end, 10);
	if (errno != 0)
		goto bad;
	g->since = since;
	p = end;
	if (expect(&p, " hist=") == -1 || history(&p, g->history) == -1)
		goto bad;
	/* The end of the description, or more words after a blank. */
	if (*p != '\0' && *p != ' ')
		goto bad;
	return 0;
bad:
	memset(g, 0, sizeof *g);
	return -1;
}

enum gi_verdict
gi_compare(uint64_t recorded, const struct gi_set *peer)
{
	size_t i;

	if (peer == NULL || peer->current == 0)
		return GI_UNKNOWN;
	if (recorded == 0)
		return GI_FIRST;
	if (peer->current == recorded)
		return GI_SAME;
	for (i = 0; i < GI_HISTORY; i++)
		if (peer->history[i] == recorded)
			return GI_SPLIT_BRAIN;
	for (i = 0; i < GI_HISTORY; i++)
		if (peer->history[i] != 0)
			return GI_UNRELATED;
	return GI_NEW;
}

#define LEFT_PREFIX "colofs-left v1 gran="

int
gi_format_left(uint64_t gran, const struct gi_left_run *runs, size_t n,
	       char *buf, size_t len)
{
	size_t i, o;
	int k;

	k = snprintf(buf, len, LEFT_PREFIX "%" PRIu64 " runs=", gran);
	if (k < 0 || (size_t)k >= len)
		return -1;
	o = (size_t)k;
	for (i = 0; i < n; i++) {
		k = snprintf(buf + o, len - o, "%s%" PRIx64 "+%" PRIx64,
			     i ? "," : "", runs[i].start, runs[i].count);
		if (k < 0 || (size_t)k >= len - o)
			return -1;
		o += (size_t)k;
	}
	return 0;
}

void
gi_format_left_all(uint64_t gran, char *buf, size_t len)
{
	snprintf(buf, len, LEFT_PREFIX "%" PRIu64 " runs=all", gran);
}

int
gi_parse_left(const char *s, uint64_t size,
	      int (*mark)(void *opaque, uint64_t off, uint64_t len),
	      void *opaque)
{
	const char *p;
	char *end;
	unsigned long long gran;
	uint64_t start, count, ngran;

	if (s == NULL || (p = strstr(s, LEFT_PREFIX)) == NULL)
		return 1;
	p += strlen(LEFT_PREFIX);
	if (*p < '1' || *p > '9')
		goto bad;
	errno = 0;
	gran = strtoull(p, &end, 10);
	if (errno != 0 || gran == 0 || (gran & (gran - 1)) != 0)
		goto bad;
	p = end;
	if (expect(&p, " runs=") == -1)
		goto bad;
	ngran = size / gran + (size % gran != 0);
	if (expect(&p, "all") == 0) {
		if (*p != '\0' && *p != ' ')
			goto bad;
		return mark(opaque, 0, size) == -1 ? -1 : 0;
	}
	while (*p != '\0' && *p != ' ') {
		if ((p[-1] != '=' && expect(&p, ",") == -1) ||
		    hexnum(&p, &start) == 0 || expect(&p, "+") == -1 ||
		    hexnum(&p, &count) == 0 || count == 0 ||
		    start >= ngran || count > ngran - start)
			goto bad;
		if (mark(opaque, start * gran,
			 (start + count) * gran > size ? size - start * gran
						       : count * gran) == -1)
			return -1;
	}
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

#define RUN_PREFIX "colofs-run v1 state="

void
gi_format_run(const char *state, const char *epoch, char *buf, size_t len)
{
	snprintf(buf, len, RUN_PREFIX "%s epoch=%s", state, epoch);
}

/* The state word (at most statelen - 1 letters) and the epoch of the
 * text gi_format_run makes, in s.  0, 1 (none), or -1 (malformed).
 */
static int
parse_run(const char *s, char *state, size_t statelen,
	  char epoch[GI_RUN_EPOCH_LEN + 1])
{
	const char *p;
	size_t n;

	if (s == NULL || (p = strstr(s, RUN_PREFIX)) == NULL)
		return 1;
	p += strlen(RUN_PREFIX);
	n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
	if (n == 0 || n >= statelen)
		return -1;
	memcpy(state, p, n);
	state[n] = '\0';
	p += n;
	if (expect(&p, " epoch=") == -1 ||
	    strspn(p, "0123456789abcdef") != GI_RUN_EPOCH_LEN ||
	    (p[GI_RUN_EPOCH_LEN] != '\0' && p[GI_RUN_EPOCH_LEN] != ' '))
		return -1;
	memcpy(epoch, p, GI_RUN_EPOCH_LEN);
	epoch[GI_RUN_EPOCH_LEN] = '\0';
	return 0;
}

bool
gi_same_incarnation(const char *then, const char *now, char *why, size_t len)
{
	struct gi_set a, b;
	char sa[32], sb[32], ea[GI_RUN_EPOCH_LEN + 1], eb[GI_RUN_EPOCH_LEN + 1];

	if (gi_parse(then, &a) != 0 || parse_run(then, sa, sizeof sa, ea) != 0) {
		snprintf(why, len, "it did not describe its incarnation "
			 "(not a colofs secondary, or an older one)");
		return false;
	}
	if (gi_parse(now, &b) != 0 || parse_run(now, sb, sizeof sb, eb) != 0) {
		snprintf(why, len, "it no longer describes its incarnation");
		return false;
	}
	if (a.current != b.current) {
		snprintf(why, len, "its generation is %016" PRIx64 ", not %016"
			 PRIx64, b.current, a.current);
		return false;
	}
	if (strcmp(ea, eb) != 0) {
		snprintf(why, len, "it came back with another epoch (%s, not "
			 "%s): it restarted without handing its state over",
			 eb, ea);
		return false;
	}
	if (strcmp(sb, "none") != 0 && strcmp(sb, "running") != 0) {
		snprintf(why, len, "it is in state %s", sb);
		return false;
	}
	return true;
}
