/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_PROTECT_H
#define COLOFS_PROTECT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "durable.h"
#include "primary.h"
#include "secondary.h"

/* Re-protect in place: a secondary's dirty tracking from the failover on,
 * and the switch of a done secondary into a primary (protect.c).
 */
struct protect;

/* Opens each disk's bitmap (STATE_DIR/NAME.dirty, as a primary names it)
 * and taps r's writes into it.  Before any I/O.  A bitmap that cannot be
 * opened is logged and not kept: the protect after is then a full sync.
 * NULL only without memory.
 */
struct protect *protect_new(const struct config *cfg, struct secondary *r,
			    struct durable *du);
/* A returning primary (mode = secondary on a disk whose bitmap a
 * primary left clean, or with writes its secondary never got): in none,
 * takes that pair's generation (the one the new primary tracked from),
 * and offers its leftover bits in the export description (core/gi.h), so
 * that the new primary's sync is incremental.  A bitmap that cannot
 * vouch (the primary died replicating, its sync did not finish, too many
 * runs to send) is logged and left alone: the generations then force a
 * full sync.  Not after --discard-local.  0, or -1 (logged): the daemon
 * must not start.
 */
int protect_adopt(struct protect *pr);
/* The export description (an nbd_describe_fn): the generations, then
 * the leftover, if any.
 */
void protect_describe(void *opaque, char *buf, size_t len);

/* Frees the primary made by protect_switch (draining it, closing its
 * links, saving its bitmaps), then the rest.  NULL is a no-op.
 */
void protect_free(struct protect *pr);

/* From done, with no view I/O in flight (the caller drains it): records
 * the role in the state file, hands the bitmaps and a fresh handle on the
 * image to a new primary mirroring to uri, in state none.  Its start is
 * then incremental when the bitmap tracked every write since the
 * failover, else (or with full) a full sync.  The primary (freed by
 * protect_free), or NULL with errno and the reason in r's error (still
 * done, still tracking).
 */
struct primary *protect_switch(struct protect *pr, const char *uri, bool full);

#endif
