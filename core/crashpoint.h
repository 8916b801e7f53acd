/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_CRASHPOINT_H
#define COLOFS_CRASHPOINT_H

#include <stdbool.h>

/* A test hook for crash tests (crashpoint.c): named points on the paths
 * that must survive a kill -9.  With COLOFS_TEST_CRASH_AT=NAME (or
 * NAME:N, the Nth time the point is passed) in the environment, the
 * process writes "crash point NAME" to stderr and _exit(137)s there, as
 * a kill -9 at that instant would leave things.  Unset: nothing happens
 * (one load of a flag).
 */
void crash_point(const char *name);
/* true when COLOFS_TEST_CRASH_AT is set: callers may skip building a
 * point's name otherwise.
 */
bool crash_points_enabled(void);
/* For tests in one process: arms the same as the variable would (spec
 * NULL: disarms) and resets the pass counter.
 */
void crash_point_arm(const char *spec);

#endif
