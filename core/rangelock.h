/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_RANGELOCK_H
#define COLOFS_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Range locks order overlapping requests and let the rest run in
 * parallel.  Requests are served first come, first served per range: a
 * request waits for every earlier request that overlaps it, except that
 * two shared requests never wait for each other.  Callers put a struct
 * rangelock_entry on their stack for the duration.
 */
struct rangelock_entry {
	uint64_t start, end;
	bool exclusive;
	struct rangelock_entry *prev, *next;
};

struct rangelock {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rangelock_entry *head, *tail;	/* protected by lock */
	unsigned waiters;			/* protected by lock */
};

void rangelock_init(struct rangelock *rl);
void rangelock_release_all(struct rangelock *rl);	/* destroys; must be empty */

void rangelock_acquire(struct rangelock *rl, struct rangelock_entry *e,
		       uint64_t off, uint64_t len, bool exclusive);
void rangelock_release(struct rangelock *rl, struct rangelock_entry *e);
/* The same without waiting: true if e now holds the range; false if an
 * entry ahead overlaps it (then e is not queued and holds nothing).  For
 * a holder of other ranges, which must not queue behind a waiter that
 * waits for them.
 */
bool rangelock_try_acquire(struct rangelock *rl, struct rangelock_entry *e,
			   uint64_t off, uint64_t len, bool exclusive);

#endif
