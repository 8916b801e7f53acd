/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_STATEFILE_H
#define COLOFS_STATEFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "fdio.h"
#include "gi.h"
#include "state.h"

/* Small files that must survive a crash or a power loss, and the state
 * file built on them (statefile.c).
 */


#define STATEFILE_GEN_LEN 32		/* hex digits */
#define STATEFILE_URI_MAX 1024

struct statefile {
	enum secondary_state state;
	char generation[STATEFILE_GEN_LEN + 1];
	bool journaled;		/* failover, running: the journals are durable;
				 * none: a planned restart (durable.c) */
	/* done, then protected in place: the secondary's URI (the process
	 * runs as a primary and a restart must too); "" otherwise.
	 */
	char protect[STATEFILE_URI_MAX];
	/* The secondary's generation identifiers (gi.h): gi_current,
	 * gi_since, gi_history.  All zero when the file has none (made by
	 * an older colofs): the daemon starts a first generation.
	 */
	struct gi_set gi;
	bool s_behind;		/* s_consistent=0: S may be behind the
				 * primary (absent: 1) */
};

/* Reads path.  0 and *sf; 1 when the file does not exist; -1 with errno
 * (EINVAL: not a state file) and the reason in err.
 */
int statefile_read(const char *path, struct statefile *sf, char *err,
		   size_t errlen);
/* Writes DIR/NAME with durable_write.  0; or -1 with errno, and the file
 * is as it was; or 1 with errno when the file was renamed into place but
 * its directory could not be synced, twice: the new content is written
 * (a reader and maybe a crash see it) and must be treated as such.
 */
int statefile_write(const char *dir, const char *name,
		    const struct statefile *sf);
/* A fresh random generation identifier (getrandom).  0, or -1. */
int statefile_new_generation(char out[STATEFILE_GEN_LEN + 1]);

#endif
