/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_ERRLOG_H
#define COLOFS_ERRLOG_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

/* The errors of an engine (secondary or primary) for the operator: the
 * current one, which .colo/error shows until the condition ends (the
 * engine clears it), and the last ERRLOG_KEEP ever raised, with their
 * times, which .colo/errors shows after they cleared.  Thread-safe; its
 * lock is a leaf (taken under any other lock, never the other way).
 */
#define ERRLOG_KEEP 16
#define ERRLOG_MSG 2600

struct errlog_entry {
	time_t at; /* 0: empty */
	char msg[ERRLOG_MSG];
};

struct errlog {
	pthread_mutex_t lock;
	struct errlog_entry current;	       /* protected by lock */
	struct errlog_entry ring[ERRLOG_KEEP]; /* protected by lock */
	unsigned next; /* protected by lock: ring slot */
};

void errlog_init(struct errlog *el);
void errlog_release(struct errlog *el);
/* Raises an error: it becomes the current one and enters the history. */
void errlog_vrecord(struct errlog *el, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* The condition ended: no current error (the history keeps it). */
void errlog_clear(struct errlog *el);
/* The current error into buf ("" if none); its time, or 0. */
time_t errlog_current(struct errlog *el, char *buf, size_t len);
/* "2026-01-02T03:04:05Z" into buf (at least 21 bytes); "" for 0. */
void errlog_time(time_t at, char *buf, size_t len);
/* The history, oldest first, one "TIME MESSAGE" line each. */
void errlog_history(struct errlog *el, FILE *fp);

#endif
