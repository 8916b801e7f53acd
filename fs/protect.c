/* SPDX-License-Identifier: MIT */
/* Re-protect in place: a promoted secondary becomes a primary without
 * unmounting (ctl "protect [full] URI"), and copies to its new secondary
 * only what changed since the failover.
 *
 * Tracking.  Each disk has a dirty bitmap in state_dir, named as a
 * primary names its own (durable_bitmap_path), so that the primary made by the
 * switch takes it over as is.  The secondary's tap (core/secondary.h) marks
 * it before S takes anything the primary did not send: the failover
 * commit's buffered extents, and the view's writes in failover and done.
 * The marks stay in memory (tap_write): the first sets BITMAP_UNCLEAN
 * durably, a clean stop and the protect save them; after a crash the
 * bitmap is all dirty (a full sync).  When start leaves none for running,
 * S is the primary's again:
 * the bitmap is emptied and flagged BITMAP_SYNCED with no peer, which
 * reads "every write since S was last the peer's is marked".
 *
 * The switch (protect_switch, from done, view I/O drained by fusefs):
 *   1. S is flushed and the link made; the secondary lends its image handle
 *      (it holds the image's locks) and is idle from then on;
 *   2. the state file gets protect=URI, so a restart serves as a primary;
 *   3. each bitmap gets URI as its peer when it tracked since the
 *      failover (BITMAP_SYNCED and no peer, or already URI after a
 *      restart), else loses BITMAP_SYNCED (a full sync);
 *   4. the primary engine opens the bitmaps and borrows the images, in
 *      state none; the caller starts its sync (incremental, or full).
 * The secondary stays, idle and fenced in done (its listener refuses the
 * old primary), until the daemon stops.
 *
 * Generations (core/gi.h), DRBD-style.  The tracking counts against a
 * base: the generation S was in sync with the primary in, recorded at
 * start (tap_start) and moved to the history by the promotion.  The old
 * primary's bitmap records the same one (it names the pair).  When the
 * old primary comes back as a secondary (protect_adopt), its bitmap says
 * what it wrote that this side never got: it takes that pair's generation
 * as its current one and offers those granules in its export description
 * ("colofs-left", all of them when it died replicating).  The new
 * primary's sync is then incremental (rule 3): its bits since the
 * failover OR the leftover, which rolls the old primary's own writes
 * back.  Any other generation (a wiped disk, another pair's, one that
 * cannot vouch) is a full sync or a split-brain refusal, as gi.h's table
 * says; "protect full" copies everything whatever it presents.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
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
	pthread_mutex_t left_lock;
	char *left;	    /* a returning primary's leftover (gi.h), or NULL */
	bool left_all;	    /* it is "all"; left_lock */
	struct secondary *r;
	struct durable *du;
	size_t ndisks;
	char **paths;	    /* the bitmaps' (NULL: none) */
	atomic_bool *unclean; /* BITMAP_UNCLEAN is set on disk i's */
	pthread_mutex_t mark_lock; /* the first mark's, which sets it */
	struct bitmap **bm; /* NULL: not tracked (or handed on) */
	struct primary_link *link;
	struct primary *p;
};

static const char *
cfg_name(const struct protect *pr, size_t i)
{
	return pr->cfg->disks[i].name;
}

/* A write S takes that the primary did not send.  The marks stay in
 * memory: the first one sets BITMAP_UNCLEAN durably (before S takes the
 * write), a clean stop or the protect saves them and clears it, and a
 * bitmap found unclean is all dirty (a full sync).  So the VM's first
 * write to each granule costs no bitmap sync.
 */
static int
tap_write(void *opaque, size_t i, uint64_t off, uint64_t len)
{
	struct protect *pr = opaque;
	struct bitmap *b = pr->bm[i];
	int rc = 0;

	if (b == NULL)
		return 0;
	if (!atomic_load(&pr->unclean[i])) {
		pthread_mutex_lock(&pr->mark_lock);
		if (!atomic_load(&pr->unclean[i])) {
			rc = bitmap_update(b, BITMAP_UNCLEAN, 0, NULL);
			if (rc == 0)
				atomic_store(&pr->unclean[i], true);
		}
		pthread_mutex_unlock(&pr->mark_lock);
	}
	if (rc == 0)
		bitmap_mark_lazy(b, off, len);
	return rc;
}

/* Saves disk i's marks (a whole rewrite) and clears BITMAP_UNCLEAN, with
 * the flags in set and clear and the peer (NULL: kept).  0, or -1.
 */
static int
save(struct protect *pr, size_t i, unsigned set, unsigned clear,
     const char *peer)
{
	if (bitmap_update(pr->bm[i], set, clear | BITMAP_UNCLEAN, peer) == -1)
		return -1;
	atomic_store(&pr->unclean[i], false);
	return 0;
}

/* S is the primary's again: nothing written since, no peer yet.  Unless
 * S may be behind the primary (start force): then nothing is known, and
 * a protect after the next failover copies everything.
 */
static void
tap_start(void *opaque, bool consistent)
{
	struct protect *pr = opaque;
	struct gi_set gi, own;
	uint64_t old;
	size_t i;
	bool vouched, all;

	/* A returning primary (protect_adopt): its leftover stays marked,
	 * whether or not the new primary's sync rolled it back (a copy too
	 * many at worst), and the adoption vouches for the rest: S is the
	 * pair's generation plus those bits, even when start had to be
	 * forced (the s_consistent=0 of its --demote).
	 */
	pthread_mutex_lock(&pr->left_lock);
	vouched = pr->left != NULL;
	all = pr->left_all;
	free(pr->left);
	pr->left = NULL;
	pr->left_all = false;
	pthread_mutex_unlock(&pr->left_lock);
	consistent = consistent || vouched;
	durable_gi(pr->du, &gi);
	for (i = 0; i < pr->ndisks; i++) {
		struct bitmap *b = pr->bm[i];
		struct secondary_disk *d = secondary_disk_at(pr->r, i);

		if (b == NULL)
			continue;
		if (!vouched)
			bitmap_clear(b, 0, secondary_disk_size(d));
		else if (all)
			bitmap_mark_lazy(b, 0, secondary_disk_size(d));
		bitmap_gens(b, &old, &own);
		/* The bits count against the generation S is in sync with
		 * the primary in (its bitmap records the same one): the
		 * base a protect after the failover hands on.
		 */
		if (save(pr, i, consistent ? BITMAP_SYNCED : 0,
			 BITMAP_LIVE | BITMAP_AL | BITMAP_SPLIT_BRAIN |
			 (consistent ? 0 : BITMAP_SYNCED), "") == -1 ||
		    bitmap_set_gens(b, consistent ? gi.current : 0, &own) == -1) {
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
protect_new(const struct config *cfg, struct secondary *r, struct durable *du)
{
	struct protect *pr = calloc(1, sizeof *pr);
	struct secondary_tap tap;
	char *stem = NULL;
	size_t i;

	if (pr == NULL)
		return NULL;
	pthread_mutex_init(&pr->left_lock, NULL);
	pthread_mutex_init(&pr->mark_lock, NULL);
	pr->cfg = cfg;
	pr->r = r;
	pr->du = du;
	pr->ndisks = cfg->ndisks;
	pr->paths = calloc(cfg->ndisks + 1, sizeof *pr->paths);
	pr->bm = calloc(cfg->ndisks + 1, sizeof *pr->bm);
	pr->unclean = calloc(cfg->ndisks + 1, sizeof *pr->unclean);
	if (pr->paths == NULL || pr->bm == NULL || pr->unclean == NULL)
		goto fail;
	stem = durable_stem(cfg->mountpoint);
	if (stem == NULL)
		goto fail;
	for (i = 0; i < cfg->ndisks; i++) {
		struct secondary_disk *d = secondary_disk_at(r, i);

		/* NULL (logged): only a bitmap of the old name exists. */
		pr->paths[i] = durable_bitmap_path(cfg->state_dir, stem,
						   cfg->disks[i].name);
		if (pr->paths[i] != NULL)
			pr->bm[i] = bitmap_open(pr->paths[i],
						secondary_disk_size(d),
						cfg->dirty_granularity);
		if (pr->bm[i] == NULL)
			log_warn("%s: no dirty tracking: a protect after a "
				 "failover will copy the whole disk",
				 cfg->disks[i].name);
	}
	free(stem);
	tap = (struct secondary_tap) { tap_write, tap_start, pr };
	secondary_set_tap(r, &tap);
	return pr;
fail:
	log_error("protect: %m");
	free(stem);
	protect_free(pr);
	return NULL;
}

/* The leftover text of disk 0's bitmap b (gi.h), malloc'd; NULL with
 * errno (E2BIG: too many runs for an export description).
 */
static char *
left_text(struct bitmap *b, uint64_t size)
{
	uint64_t gran = bitmap_granularity(b), off = 0, o, l;
	struct gi_left_run *runs = NULL, *nr;
	size_t n = 0, cap = 0;
	char *buf = malloc(GI_LEFT_MAX);

	while (buf != NULL && off < size &&
	       bitmap_next(b, off, UINT64_MAX, &o, &l)) {
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			nr = realloc(runs, cap * sizeof *runs);
			if (nr == NULL)
				goto fail;
			runs = nr;
		}
		runs[n].start = o / gran;
		runs[n].count = (l + gran - 1) / gran;
		n++;
		off = o + l;
	}
	if (buf != NULL && gi_format_left(gran, runs, n, buf, GI_LEFT_MAX) == -1) {
		errno = E2BIG;
		goto fail;
	}
	free(runs);
	return buf;
fail:
	free(runs);
	free(buf);
	return NULL;
}

/* Disk 0's bitmap b: NULL if a primary left it (this disk returns in that
 * pair's generation), else "".  *all when it cannot say which granules
 * differ (the reason in *why): then everything is its leftover.
 */
static const char *
returning(struct bitmap *b, bool *all)
{
	char peer[STATEFILE_URI_MAX];
	struct gi_set own;
	uint64_t gen;
	unsigned f = bitmap_flags(b);

	bitmap_peer(b, peer, sizeof peer);
	bitmap_gens(b, &gen, &own);
	*all = false;
	if (peer[0] == '\0' || gen == 0)
		return "";	/* not a primary's: nothing to say */
	if (f & BITMAP_SPLIT_BRAIN)
		return "its last sync found a split brain: the generations "
		       "decide (colofs(8), SPLIT BRAIN)";
	*all = true;
	if (f & BITMAP_LIVE)
		return "it stopped while replicating (killed or crashed): "
		       "the writes it had in flight are not known here";
	if (!(f & BITMAP_SYNCED))
		return "its last sync did not begin";
	*all = false;
	return NULL;
}

int
protect_adopt(struct protect *pr)
{
	struct bitmap *b = pr->bm[0];
	struct gi_set gi, own;
	uint64_t gen, size, gran;
	const char *why;
	char *text;
	bool all;

	if (pr->ndisks != 1 || b == NULL ||
	    secondary_state(pr->r) != SECONDARY_NONE)
		return 0;
	why = returning(b, &all);
	if (why != NULL && !all) {
		if (why[0] != '\0')
			log_warn("%s: this disk was a primary, but %s",
				 cfg_name(pr, 0), why);
		return 0;
	}
	bitmap_gens(b, &gen, &own);
	size = secondary_disk_size(secondary_disk_at(pr->r, 0));
	gran = bitmap_granularity(b);
	text = all ? NULL : left_text(b, size);
	if (text == NULL && !all) {
		why = errno == E2BIG ? "too many runs to send" : strerror(errno);
		all = true;
	}
	if (all) {
		text = malloc(GI_LEFT_MAX);
		if (text == NULL)
			return -1;
		gi_format_left_all(gran, text, GI_LEFT_MAX);
		log_warn("%s: this disk was a primary, but %s: the next "
			 "primary copies the whole disk", cfg_name(pr, 0), why);
	}
	durable_gi(pr->du, &gi);
	if (gi.current != gen && durable_adopt_gi(pr->du, gen) == -1) {
		free(text);
		return -1;
	}
	pthread_mutex_lock(&pr->left_lock);
	free(pr->left);
	pr->left = text;
	pr->left_all = all;
	pthread_mutex_unlock(&pr->left_lock);
	log_info("%s: returning primary: generation %016" PRIx64 " (the "
		 "pair it left); %s it wrote that its secondary never got go "
		 "to the next primary, which copies them back with its own",
		 cfg_name(pr, 0), gen, all ? "all the bytes (it cannot tell)" :
		 "the bytes");
	if (!all)
		log_info("%s: leftover: %" PRIu64 " bytes", cfg_name(pr, 0),
			 bitmap_dirty_bytes(b));
	return 0;
}

void
protect_describe(void *opaque, char *buf, size_t len)
{
	struct protect *pr = opaque;
	size_t n;

	durable_describe(pr->du, buf, len);
	n = strlen(buf);
	pthread_mutex_lock(&pr->left_lock);
	if (pr->left != NULL && n + 1 < len)
		snprintf(buf + n, len - n, " %s", pr->left);
	pthread_mutex_unlock(&pr->left_lock);
}

void
protect_free(struct protect *pr)
{
	size_t i;

	if (pr == NULL)
		return;
	secondary_set_tap(pr->r, NULL);
	primary_free(pr->p);
	primary_link_free(pr->link);
	for (i = 0; i < pr->ndisks; i++) {
		/* A clean stop: the marks kept in memory are saved. */
		if (pr->bm && pr->bm[i] && atomic_load(&pr->unclean[i]) &&
		    save(pr, i, 0, 0, NULL) == -1)
			log_error("%s: dirty bitmap %s: %m; a protect will "
				  "copy the whole disk", cfg_name(pr, i),
				  pr->paths[i]);
		if (pr->bm)
			bitmap_free(pr->bm[i]);
		if (pr->paths)
			free(pr->paths[i]);
	}
	free(pr->bm);
	free(pr->paths);
	free(pr->left);
	free(pr->unclean);
	pthread_mutex_destroy(&pr->left_lock);
	pthread_mutex_destroy(&pr->mark_lock);
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
	secondary_record_error(pr->r, "protect: %s", why);
	errno = err;
	return NULL;
}

/* Step 3: the bitmap handed on, its flags saying what it knows.  An
 * incremental one keeps its base: the generation S was in sync with the
 * old primary in, recorded at start (tap_start) and the one the
 * promotion moved to the history (durable.c), or the one the sync to
 * uri recorded after a restart in done.  A returning old primary that
 * presents it (or its new secondary, after a restart) gets only the
 * bits, plus its own leftover (core/gi.h); anything else copies all.
 */
static int
hand_on(struct protect *pr, size_t i, const char *uri, bool full)
{
	struct bitmap *b = pr->bm[i];
	char peer[STATEFILE_URI_MAX];
	struct gi_set gi, own;
	uint64_t base;
	bool inc, again;
	int rc;

	if (b == NULL)
		return 0;
	bitmap_peer(b, peer, sizeof peer);
	bitmap_gens(b, &base, &own);
	durable_gi(pr->du, &gi);
	again = peer[0] != '\0' && strcmp(peer, uri) == 0;
	inc = !full && (bitmap_flags(b) & BITMAP_SYNCED) &&
	      (peer[0] == '\0' || again);
	if (inc && !again && (base == 0 || base != gi.history[0])) {
		log_warn("%s: protect: the tracking's base generation "
			 "%016" PRIx64 " is not the one this disk left at its "
			 "promotion (%016" PRIx64 "): a full sync",
			 cfg_name(pr, i), base, gi.history[0]);
		inc = false;
	}
	rc = inc ? save(pr, i, 0, 0, uri) : save(pr, i, 0, BITMAP_SYNCED, NULL);
	/* Without a base, none is recorded (core/gi.h rule 2: a full sync),
	 * never a stale one from this disk's last life as a primary (rule 4
	 * would call it a split brain).
	 */
	if (rc == 0 && !inc)
		rc = bitmap_set_gens(b, 0, &own);
	if (rc == 0) {
		log_info("%s: protect: %s (%llu dirty bytes tracked, base "
			 "generation %016" PRIx64 ")",
			 cfg_name(pr, i), inc ? "incremental" : "full",
			 (unsigned long long) bitmap_dirty_bytes(b),
			 inc ? base : 0);
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
	if (secondary_state(pr->r) != SECONDARY_DONE) {
		snprintf(why, sizeof why,
			 "the state is %s (protect is for "
			 "done, after a failover)",
			 secondary_state_name(secondary_state(pr->r)));
		return refuse(pr, EBUSY, why);
	}
	if (pr->ndisks != 1)
		return refuse(pr, EINVAL, "only for a single disk");
	if (strlen(uri) >= STATEFILE_URI_MAX || strstr(uri, "://") == NULL)
		return refuse(pr, EINVAL, "want protect [full] URI");
	if (pr->paths[0] == NULL)
		return refuse(pr, EINVAL, "no bitmap path (the log says why)");
	/* 1. */
	if (secondary_view_flush(secondary_disk_at(pr->r, 0)) == -1) {
		snprintf(why, sizeof why, "flush: %s", strerror(errno));
		return refuse(pr, EIO, why);
	}
	/* The secondary's own handle (it holds the image's locks), lent:
	 * the secondary is done and no view I/O reaches it any more.
	 */
	img = secondary_disk_image(secondary_disk_at(pr->r, 0));
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
					secondary_disk_size(
						secondary_disk_at(pr->r, 0)),
					pr->cfg->dirty_granularity);
		if (pr->bm[0] != NULL)
			bitmap_update(pr->bm[0], 0, BITMAP_SYNCED, NULL);
		return refuse(pr, EIO, why);
	}
	primary_link_on_lost(pr->link, lost, pr->p);
	primary_link_on_vouch(pr->link, primary_vouch, pr->p);
	log_info("protect: primary mode, secondary %s", uri);
	return pr->p;
}
