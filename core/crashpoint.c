/* SPDX-License-Identifier: MIT */
/* Crash points: see crashpoint.h.  The variable is read once, at the
 * first point passed; the pass counter is shared by every thread, so
 * NAME:N names the Nth pass in the order the process made them.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crashpoint.h"
#include "log.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_bool enabled;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char target[128];		/* protected by lock */
static unsigned long nth, passes;	/* protected by lock */

void
crash_point_arm(const char *spec)
{
	const char *colon;

	pthread_mutex_lock(&lock);
	target[0] = '\0';
	nth = 1;
	passes = 0;
	if (spec && *spec) {
		colon = strchr(spec, ':');
		snprintf(target, sizeof target, "%.*s",
			 (int) (colon ? (size_t) (colon - spec) : strlen(spec)),
			 spec);
		if (colon)
			nth = strtoul(colon + 1, NULL, 10);
	}
	atomic_store(&enabled, target[0] != '\0');
	pthread_mutex_unlock(&lock);
}

static void
init(void)
{
	crash_point_arm(getenv("COLOFS_TEST_CRASH_AT"));
}

bool
crash_points_enabled(void)
{
	pthread_once(&once, init);
	return atomic_load(&enabled);
}

void
crash_point(const char *name)
{
	bool hit;

	if (!crash_points_enabled())
		return;
	pthread_mutex_lock(&lock);
	hit = strcmp(name, target) == 0 && ++passes == nth;
	pthread_mutex_unlock(&lock);
	if (hit) {
		log_warn("crash point %s", name);
		_exit(137);
	}
}
