/* SPDX-License-Identifier: MIT */
/* Timed waits on the monotonic clock: a condition variable made with
 * cond_init_monotonic and a deadline from deadline_in_ms, so that a step
 * of the wall clock neither ends a wait early nor stretches it.
 */
#ifndef COLOFS_DEADLINE_H
#define COLOFS_DEADLINE_H

#include <pthread.h>
#include <time.h>

static inline void
cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &a);
	pthread_condattr_destroy(&a);
}

/* Now + ms on CLOCK_MONOTONIC, for a cond_init_monotonic condition. */
static inline struct timespec
deadline_in_ms(unsigned ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long) (ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

#endif
