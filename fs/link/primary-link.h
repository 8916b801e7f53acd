/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_PRIMARY_LINK_H
#define COLOFS_PRIMARY_LINK_H

#include "config.h"
#include "primary.h"

/* The primary's link to its secondary: one libnbd connection per disk,
 * driven by a poll thread each (primary-link.c).
 */
struct primary_link;

/* Fills the connection settings from cfg's disks (URIs are given at
 * connect time; the TLS credentials come from here).  NULL with errno.
 */
struct primary_link *primary_link_new(const struct config *cfg);
/* Closes every connection.  NULL is a no-op.  Call after primary_free. */
void primary_link_free(struct primary_link *l);

/* Called from a connection's poll thread when the connection dies by
 * itself (the secondary closed it, or an I/O error), not when it was
 * dropped on request: disk index and a reason.
 */
typedef void primary_link_lost_fn(void *arg, size_t i, const char *why);
void primary_link_on_lost(struct primary_link *l, primary_link_lost_fn *fn,
			  void *arg);

/* Called while disk i connects, with the export description the
 * secondary sent (NBD_OPT_INFO; "" if none): the secondary's generation
 * to present at NBD_OPT_GO (export "NAME colofs-gen=HEX", which a colofs
 * secondary takes as "a primary that will sync me connected": it clears
 * s_consistent=0), or 0 to present none.  Without it, none.
 */
typedef uint64_t primary_link_vouch_fn(void *arg, size_t i,
				       const char *description);
void primary_link_on_vouch(struct primary_link *l, primary_link_vouch_fn *fn,
			   void *arg);

/* The table that primary_new takes, with l as its opaque. */
extern const struct primary_link_ops primary_link_ops;

#endif
