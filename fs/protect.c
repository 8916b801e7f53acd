/* SPDX-License-Identifier: MIT */
/* Re-protect in place: a promoted secondary becomes a primary without
 * unmounting (ctl "protect [full] URI"), and copies to its new secondary
 * only what changed since the failover.
 *
 * Tracking.  Each disk has a dirty bitmap in state_dir, named as a
 * primary names its own (durable_bitmap_path), so that the primary made by the
 * switch takes it over as is.  The replica's tap (core/secondary.h) marks
 * it, durably, before S takes anything the primary did not send: the
 * failover commit's buffered extents, and the view's writes in failover
 * and done.  When start leaves none for running, S is the primary's again:
 * the bitmap is emptied and flagged BITMAP_SYNCED with no peer, which
 * reads "every write since S was last the peer's is marked".
 *
 * The switch (protect_switch, from done, view I/O drained by fusefs):
 *   1. S is flushed and the link made; the replica lends its image handle
 *      (it holds the image's locks) and is idle from then on;
 *   2. the state file gets protect=URI, so a restart serves as a primary;
 *   3. each bitmap gets URI as its peer when it tracked since the
 *      failover (BITMAP_SYNCED and no peer, or already URI after a
 *      restart), else loses BITMAP_SYNCED (a full sync);
 *   4. the primary engine opens the bitmaps and borrows the images, in
 *      state none; the caller starts its sync (incremental, or full).
 * The replica stays, idle and fenced in done (its listener refuses the
 * old primary), until the daemon stops.
 *
 * With generations (core/gi.h) the first sync to the new secondary is
 * full all the same (no generation of it is recorded: rule 2); handing
 * the old primary's generation over at failover would make it
 * incremental (not done).
 *
 * What it cannot know: the writes the old primary made that never reached
 * this side (it was degraded, or died with writes in flight).  Those are
 * in the old primary's bitmap, not here; when the old primary may hold
 * such writes, protect with "full".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "gi.h"
#include "log.h"
#include "link/primary-link.h"
#include "protect.h"
#include "statefile.h"

struct protect {
	const struct config *cfg;
	struct replica *r;
	struct durable *du;
	size_t ndisks;
	char **paths;	    /* the bitmaps' (NULL: none) */
	struct bitmap **bm; /* NULL: not tracked (or handed on) */
	struct primary_link *link;
	struct primary *p;
};

static const char *
cfg_name(const struct protect *pr, size_t i)
{
	return pr->cfg->disks[i].name;
}

static int
tap_write(void *opaque, size_t i, uint64_t off, uint64_t len)
{
	struct protect *pr = opaque;

	return pr->bm[i] ? bitmap_mark(pr->bm[i], off, len) : 0;
}

/* S is the primary's again: nothing written since, no peer yet.  Unless
 * S may be behind the primary (start force): then nothing is known, and
 * a protect after the next failover copies everything.
 */
static void
tap_start(void *opaque, bool consistent)
{
	struct protect *pr = opaque;
	size_t i;

	for (i = 0; i < pr->ndisks; i++) {
		struct bitmap *b = pr->bm[i];
		struct replica_disk *d = replica_disk_at(pr->r, i);

		if (b == NULL)
			continue;
		bitmap_clear(b, 0, replica_disk_size(d));
		if (bitmap_update(b, consistent ? BITMAP_SYNCED : 0,
				  BITMAP_LIVE | (consistent ? 0 : BITMAP_SYNCED),
				  "") == -1) {
			log_error("%s: dirty bitmap %s: %m; a protect after a "
				  "failover will copy the whole disk",
				  cfg_name(pr, i), pr->paths[i]);
			bitmap_free(b);
			pr->bm[i] = NULL;
			if (unlink(pr->paths[i]) == -1 && errno != ENOENT)
				log_error("%s: %m", pr->paths[i]);
		}
	}
}

struct protect *
protect_new(const struct config *cfg, struct replica *r, struct durable *du)
{
	struct protect *pr = calloc(1, sizeof *pr);
	struct replica_tap tap;
	char *stem = NULL;
	size_t i;

	if (pr == NULL)
		return NULL;
	pr->cfg = cfg;
	pr->r = r;
	pr->du = du;
	pr->ndisks = cfg->ndisks;
	pr->paths = calloc(cfg->ndisks + 1, sizeof *pr->paths);
	pr->bm = calloc(cfg->ndisks + 1, sizeof *pr->bm);
	if (pr->paths == NULL || pr->bm == NULL)
		goto fail;
	stem = durable_stem(cfg->mountpoint);
	if (stem == NULL)
		goto fail;
	for (i = 0; i < cfg->ndisks; i++) {
		struct replica_disk *d = replica_disk_at(r, i);

		/* NULL (logged): only a bitmap of the old name exists. */
		pr->paths[i] = durable_bitmap_path(cfg->state_dir, stem,
						   cfg->disks[i].name);
		if (pr->paths[i] != NULL)
			pr->bm[i] = bitmap_open(pr->paths[i],
						replica_disk_size(d),
						cfg->dirty_granularity);
		if (pr->bm[i] == NULL)
			log_warn("%s: no dirty tracking: a protect after a "
				 "failover will copy the whole disk",
				 cfg->disks[i].name);
	}
	free(stem);
	tap = (struct replica_tap) { tap_write, tap_start, pr };
	replica_set_tap(r, &tap);
	return pr;
fail:
	log_error("protect: %m");
	free(stem);
	protect_free(pr);
	return NULL;
}

void
protect_free(struct protect *pr)
{
	size_t i;

	if (pr == NULL)
		return;
	replica_set_tap(pr->r, NULL);
	primary_free(pr->p);
	primary_link_free(pr->link);
	for (i = 0; i < pr->ndisks; i++) {
		if (pr->bm)
			bitmap_free(pr->bm[i]);
		if (pr->paths)
			free(pr->paths[i]);
	}
	free(pr->bm);
	free(pr->paths);
	free(pr);
}

static void
lost(void *arg, size_t i, const char *why)
{
	primary_link_lost(arg, i, why);
}

static struct primary *
refuse(struct protect *pr, int err, const char *why)
{
	log_error("protect: %s", why);
	replica_record_error(pr->r, "protect: %s", why);
	errno = err;
	return NULL;
}

/* Step 3: the bitmap handed on, its flags saying what it knows. */
static int
hand_on(struct protect *pr, size_t i, const char *uri, bool full)
{
	struct bitmap *b = pr->bm[i];
	char peer[STATEFILE_URI_MAX];
	bool inc;
	int rc;

	if (b == NULL)
		return 0;
	bitmap_peer(b, peer, sizeof peer);
	inc = !full && (bitmap_flags(b) & BITMAP_SYNCED) &&
	      (peer[0] == '\0' || strcmp(peer, uri) == 0);
	rc = inc ? bitmap_update(b, 0, 0, uri)
		 : bitmap_update(b, 0, BITMAP_SYNCED, NULL);
	/* The bits count from a failover, not against a generation of the
	 * new secondary's: none is recorded (core/gi.h rule 2: the first
	 * sync is full), never a stale one from this disk's last life as a
	 * primary (rule 4 would call it a split brain).
	 */
	if (rc == 0 && !(peer[0] != '\0' && strcmp(peer, uri) == 0)) {
		uint64_t old;
		struct gi_set own;

		bitmap_gens(b, &old, &own);
		rc = bitmap_set_gens(b, 0, &own);
	}
	if (rc == 0) {
		log_info("%s: protect: %s (%llu dirty bytes tracked)",
			 cfg_name(pr, i), inc ? "incremental" : "full",
			 (unsigned long long) bitmap_dirty_bytes(b));
		bitmap_free(b);
		pr->bm[i] = NULL;
	}
	return rc;
}

struct primary *
protect_switch(struct protect *pr, const char *uri, bool full)
{
	struct primary_disk_config dc;
	struct primary_config pc;
	const struct config_disk *cd = &pr->cfg->disks[0];
	struct image *img;
	char why[1200];

	if (pr->p != NULL)
		return refuse(pr, EBUSY, "already a primary");
	if (replica_state(pr->r) != REPLICA_DONE) {
		snprintf(why, sizeof why,
			 "the state is %s (protect is for "
			 "done, after a failover)",
			 replica_state_name(replica_state(pr->r)));
		return refuse(pr, EBUSY, why);
	}
	if (pr->ndisks != 1)
		return refuse(pr, EINVAL, "only for a single disk");
	if (strlen(uri) >= STATEFILE_URI_MAX || strstr(uri, "://") == NULL)
		return refuse(pr, EINVAL, "want protect [full] URI");
	if (pr->paths[0] == NULL)
		return refuse(pr, EINVAL, "no bitmap path (the log says why)");
	/* 1. */
	if (replica_view_flush(replica_disk_at(pr->r, 0)) == -1) {
		snprintf(why, sizeof why, "flush: %s", strerror(errno));
		return refuse(pr, EIO, why);
	}
	/* The replica's own handle (it holds the image's locks), lent:
	 * the replica is done and no view I/O reaches it any more.
	 */
	img = replica_disk_image(replica_disk_at(pr->r, 0));
	if (pr->link == NULL)
		pr->link = primary_link_new(pr->cfg);
	if (pr->link == NULL)
		return refuse(pr, ENOMEM, "out of memory");
	/* 2, 3: a failure leaves the tracking as it was. */
	if (durable_set_protected(pr->du, uri) == -1)
		return refuse(pr, EIO, "cannot record it in the state file");
	if (hand_on(pr, 0, uri, full) == -1) {
		snprintf(why, sizeof why, "dirty bitmap %s: %s", pr->paths[0],
			 strerror(errno));
		durable_set_protected(pr->du, "");
		return refuse(pr, EIO, why);
	}
	/* 4. */
	dc = (struct primary_disk_config) {
		.name = cd->name,
		.img = img,
		.borrowed = true,
		.uri = uri,
		.bitmap_path = pr->paths[0],
	};
	pc = (struct primary_config) {
		.ndisks = 1,
		.disks = &dc,
		.granularity = pr->cfg->dirty_granularity,
		.timeout_ms = pr->cfg->secondary_timeout_ms,
		/* As serve_primary (fs/main.c): idle links probed after half
		 * the timeout.  No activity log: a crash while replicating
		 * costs a full resync.
		 */
		.keepalive_ms = pr->cfg->secondary_timeout_ms / 2 ?
				pr->cfg->secondary_timeout_ms / 2 : 1,
		.link = &primary_link_ops,
		.link_opaque = pr->link,
	};
	pr->p = primary_new(&pc);
	if (pr->p == NULL) {
		/* Still done: track again, knowing nothing (a full sync). */
		snprintf(why, sizeof why, "cannot start the primary: %s",
			 strerror(errno));
		durable_set_protected(pr->du, "");
		pr->bm[0] = bitmap_open(pr->paths[0],
					replica_disk_size(
						replica_disk_at(pr->r, 0)),
					pr->cfg->dirty_granularity);
		if (pr->bm[0] != NULL)
			bitmap_update(pr->bm[0], 0, BITMAP_SYNCED, NULL);
		return refuse(pr, EIO, why);
	}
	primary_link_on_lost(pr->link, lost, pr->p);
	log_info("protect: primary mode, secondary %s", uri);
	return pr->p;
}
