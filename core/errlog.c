/* SPDX-License-Identifier: MIT */
/* An engine's errors as the operator sees them: the current one and a
 * short history.
 *
 * .colo/error used to be "the last error ever", so a message stayed after
 * its cause was gone (a degraded pair back to replicating still said
 * degraded) and read as current.  Now the engine that raised an error
 * also ends it: errlog_clear at the transitions that end the condition
 * (see secondary.c and primary.c).  What cleared is not lost: every
 * error enters a ring of the last ERRLOG_KEEP, with its time.
 */
#include <stdio.h>
#include <string.h>

#include "errlog.h"

void
errlog_init(struct errlog *el)
{
	memset(el, 0, sizeof *el);
	pthread_mutex_init(&el->lock, NULL);
}

void
errlog_release(struct errlog *el)
{
	pthread_mutex_destroy(&el->lock);
}

void
errlog_vrecord(struct errlog *el, const char *fmt, va_list ap)
{
	struct errlog_entry *e;

	pthread_mutex_lock(&el->lock);
	e = &el->ring[el->next];
	el->next = (el->next + 1) % ERRLOG_KEEP;
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	e->at = time(NULL);
	el->current = *e;
	pthread_mutex_unlock(&el->lock);
}

void
errlog_clear(struct errlog *el)
{
	pthread_mutex_lock(&el->lock);
	el->current.at = 0;
	el->current.msg[0] = '\0';
	pthread_mutex_unlock(&el->lock);
}

time_t
errlog_current(struct errlog *el, char *buf, size_t len)
{
	time_t at;

	pthread_mutex_lock(&el->lock);
	snprintf(buf, len, "%s", el->current.msg);
	at = el->current.at;
	pthread_mutex_unlock(&el->lock);
	return at;
}

void
errlog_time(time_t at, char *buf, size_t len)
{
	struct tm tm;

	if (at == 0 || !gmtime_r(&at, &tm) ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%s", "");
}

void
errlog_history(struct errlog *el, FILE *fp)
{
	char when[32];
	unsigned i;

	pthread_mutex_lock(&el->lock);
	for (i = 0; i < ERRLOG_KEEP; i++) {
		const struct errlog_entry *e =
			&el->ring[(el->next + i) % ERRLOG_KEEP];

		if (e->at == 0)
			continue;
		errlog_time(e->at, when, sizeof when);
		fprintf(fp, "%s ", when);
		for (const char *s = e->msg; *s; s++)
			fputc(*s == '\n' ? ' ' : *s, fp);
		fputc('\n', fp);
	}
	pthread_mutex_unlock(&el->lock);
}
