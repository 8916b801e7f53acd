/* SPDX-License-Identifier: MIT */
/* What a restart remembers: the state file's policy.
 *
 * The state file (core/statefile.c) lives in state_dir, named after the
 * mountpoint escaped as systemd does (/srv/vm1 -> srv-vm1.state), so two
 * deployments sharing a state_dir never share a file.  The failover
 * journals sit beside it (srv-vm1.vda.journal) and the durable buffers in
 * buffer_dir (srv-vm1.vda.hidden, .active).
 *
 * At start-up, the state found decides the state colofs starts in:
 *
 *   (no file), none -> none
 *   none, journaled -> none, the same generation: a planned restart
 *                      (durable_hand_epoch) loses nothing in none, so a
 *                      primary may resume its connection (gi.h, epoch)
 *   running         -> none, and .colo/error says why: the secondary VM's
 *                      buffers are gone; S holds every write the primary
 *                      got a reply for, but the primary may have written
 *                      on without it: s_consistent=0 (kept in the file)
 *                      until a primary connects, and start needs force
 *   running,        -> running, the buffers and maps as a planned restart
 *   journaled          handed them over (durable_handover), the same
 *                      generation and s_consistent; if they cannot be
 *                      read: none, as above
 *   failover,       -> the commit resumes from the journals (failover,
 *   failover_failed    then done); without journals (memory buffers, no
 *                      buffer_dir) -> done, and .colo/error says S may
 *                      mix the primary's and the VM's data
 *   done            -> done: the promoted disk stays fenced (NBD GO and
 *                      primary writes refused), restart after restart;
 *                      only --demote leaves it, for none; with a
 *                      protect= line (protected in place, fs/protect.c)
 *                      the daemon serves as that URI's primary again
 *
 * The file is then rewritten with a new generation (but after a planned
 * restart: the resumed running, or none journaled).  The generation
 * identifiers (core/gi.h) carry over: a restart is not a promotion.  A
 * first one is made for a new file; --demote --discard-local makes a new
 * one and forgets the history (the primary then copies everything).  From there the
 * secondary's state hook rewrites it: running at start; failover (new
 * generation, and a new generation identifier: a promotion) once the
 * journals are durable; done before the secondary
 * acts as done; failover_failed.  Checkpoints never touch it: the hot path
 * syncs nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "fdio.h"
#include "log.h"
#include "ofdlock.h"
#include "statefile.h"

struct durable {
	struct secondary *r;
	char *dir;			/* state_dir */
	char *name;			/* STEM.state */
	char *path;			/* dir/name */
	char found[32];			/* the state found at start-up */
	bool crash_safe;		/* a failover is journaled */
	int lock_fd;			/* holds STEM.lock */
	pthread_mutex_t lock;
	struct statefile sf;		/* protected by lock: as on disk */
	bool resume;			/* durable_resume has a commit to run */
};

/* The mountpoint as a file name, as systemd-escape --path does. */
static char *
escape_path(const char *p)
{
	size_t n = strlen(p), i, o = 0;
	char *out = malloc(4 * n + 2);

	if (out == NULL)
		return NULL;
	while (*p == '/')
		p++;
	for (i = 0; p[i]; i++) {
		unsigned char c = (unsigned char) p[i];

		if (c == '/') {
			if (p[i + 1] != '/' && p[i + 1] != '\0')
				out[o++] = '-';
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '_' ||
			   (c == '.' && o > 0)) {
			out[o++] = (char) c;
		} else {
			o += (size_t) sprintf(out + o, "\\x%02x", c);
		}
	}
	if (o == 0)
		out[o++] = '-';
	out[o] = '\0';
	return out;
}

char *
durable_stem(const char *mountpoint)
{
	return escape_path(mountpoint);
}

int
durable_lock(const char *state_dir, const char *stem)
{
	char name[NAME_MAX + 1], path[PATH_MAX];
	int dfd, fd = -1;

	if ((size_t)snprintf(name, sizeof name, "%s.lock", stem) >=
	    sizeof name - 12 ||
	    (size_t)snprintf(path, sizeof path, "%s/%s", state_dir, name) >=
	    sizeof path) {
		errno = ENAMETOOLONG;
		log_error("%s/%s.lock: %m", state_dir, stem);
		return -1;
	}
	dfd = fdio_dir_open(state_dir);
	if (dfd == -1) {
		log_error("state_dir %s: %m", state_dir);
		return -1;
	}
	/* Never removed: a daemon may hold it while another looks. */
	fd = fdio_open_or_create_at(dfd, name, O_RDWR, 0600);
	if (fd == -1) {
		log_error("%s: %m", path);
	} else if (ofdlock_exclusive(fd, path) == -1) {
		close(fd);
		fd = -1;
	}
	close(dfd);
	return fd;
}

char *
durable_bitmap_path(const char *state_dir, const char *stem,
		    const char *disk)
{
	char *path = NULL, *old = NULL;
	struct stat st;

	if (asprintf(&path, "%s/%s.%s.dirty", state_dir, stem, disk) == -1 ||
	    asprintf(&old, "%s/%s.dirty", state_dir, disk) == -1) {
		log_error("bitmap of %s: %m", disk);
		free(path);
		return NULL;
	}
	/* The old name was the disk's alone, shared by every instance
	 * with a disk of that name: only the operator knows whose it is.
	 */
	if (lstat(path, &st) == -1 && errno == ENOENT &&
	    lstat(old, &st) == 0) {
		log_error("disk %s: found the bitmap %s, named by the disk "
			  "alone (an older colofs); bitmaps are now named "
			  "per mountpoint.  If it is this config's, migrate "
			  "it with: mv -n '%s' '%s'; else remove it (the "
			  "next sync is then full)", disk, old, old, path);
		free(path);
		path = NULL;
	}
	free(old);
	return path;
}

/* mkdir -p, mode 0700 for what it creates. */
static int
make_dirs(const char *dir)
{
	char buf[4096];
	size_t i, n = strlen(dir);

	if (n >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		buf[i] = dir[i];
	}
	return 0;
}

static int
hook(void *opaque, enum secondary_state next, bool journaled)
{
	struct durable *du = opaque;
	struct statefile sf;
	bool had_journals;
	int ret;

	pthread_mutex_lock(&du->lock);
	/* The file said the journals count: a done now ends a commit. */
	had_journals = du->sf.journaled;
	sf = du->sf;
	sf.state = next;
	sf.journaled = journaled;
	sf.s_behind = !secondary_s_consistent(du->r);
	if (next == SECONDARY_FAILOVER && du->sf.state == SECONDARY_RUNNING &&
	    statefile_new_generation(sf.generation) == -1) {
		pthread_mutex_unlock(&du->lock);
		return -1;
	}
	/* A promotion (failover, or stop: done from running, S = V and the
	 * VM writes S): S starts a history of its own (gi.h), durably with
	 * the state that makes it writable.
	 */
	if ((next == SECONDARY_FAILOVER || next == SECONDARY_DONE) &&
	    du->sf.state == SECONDARY_RUNNING && gi_new(&sf.gi) == -1) {
		pthread_mutex_unlock(&du->lock);
		return -1;
	}
	ret = statefile_write(du->dir, du->name, &sf);
	/* 1: renamed, its directory not synced.  The file says next now
	 * (and may after a crash): it counts as written, or a refused stop
	 * would leave done on disk with the secondary still running.  The
	 * next write syncs the directory again.
	 */
	if (ret >= 0)
		du->sf = sf;
	pthread_mutex_unlock(&du->lock);
	if (ret == 1) {
		log_error("state file %s: %s, but its directory could not be "
			  "synced: a crash may bring back the state before",
			  du->path, secondary_state_name(next));
		secondary_record_error(du->r, "state file %s says %s, but "
				     "fsync of its directory failed: a crash "
				     "may bring back the state before",
				     du->path, secondary_state_name(next));
		/* A failover answers only once durable (issue 16): refused,
		 * it becomes failover_failed, which a restart also resumes.
		 * So does a commit's done: it drops the journals next, in
		 * this directory, and a crash could bring back failover and
		 * the journals, whose resumed commit would write the old
		 * buffers over what the VM wrote in done.  Any other
		 * transition (a stop's done) counts as written.
		 */
		ret = next == SECONDARY_FAILOVER ||
		      (next == SECONDARY_DONE && had_journals) ? -1 : 0;
		if (ret == -1)
			errno = EIO;
	} else if (ret == 0) {
		log_info("state file %s: %s", du->path,
			 secondary_state_name(next));
	}
	return ret;
}

void
durable_free(struct durable *du)
{
	if (du == NULL)
		return;
	pthread_mutex_destroy(&du->lock);
	if (du->lock_fd != -1)
		close(du->lock_fd);
	free(du->dir);
	free(du->name);
	free(du->path);
	free(du);
}

/* The buffers a planned restart handed over: running again, in the
 * generation they belong to.  0; or -1, logged and recorded, and the
 * caller starts in none as after a crash in running.
 */
static int
resume_running(struct durable *du, struct secondary *r,
	       const struct statefile *old)
{
	char err[512];

	if (secondary_resume_running(r) == -1) {
		secondary_last_error(r, err, sizeof err);
		log_error("%s; starting in none, as after a crash in running",
			  err);
		secondary_record_error(r, "restarted after running: the "
			"buffers the last process handed over cannot be "
			"read: %s; a checkpoint or resync from the primary "
			"must come before start", err);
		return -1;
	}
	du->sf = *old;
	du->sf.journaled = false;
	secondary_set_s_consistent(r, !du->sf.s_behind);
	/* If this fails the file still says handed over, but the names
	 * are gone: a crash now comes back in none, which is right.
	 */
	if (statefile_write(du->dir, du->name, &du->sf) == -1)
		log_error("cannot write the state file %s", du->path);
	log_info("resumed running with the buffers the last process "
		 "handed over");
	return 0;
}

int
durable_handover(struct durable *du)
{
	if (secondary_handover(du->r) == -1) {
		log_error("handover: %m; the next start comes back in none");
		return -1;
	}
	if (hook(du, SECONDARY_RUNNING, true) == -1) {
		log_error("handover: the state file was not updated: the "
			  "next start comes back in none");
		return -1;
	}
	log_info("handover: the buffers are in %s for the next process",
		 du->dir);
	return 0;
}

void
durable_hand_epoch(struct durable *du)
{
	if (hook(du, SECONDARY_NONE, true) == -1)
		log_error("handover: the state file was not updated: the "
			  "next start draws a new epoch");
}

struct durable *
durable_open(const struct config *cfg, struct secondary *r, bool demote,
	     bool discard_local)
{
	struct durable *du = calloc(1, sizeof *du);
	struct statefile old;
	enum secondary_state start = SECONDARY_NONE;
	const char *bdir = cfg->buffer_dir;
	char err[512], *stem = NULL;
	bool resume = false, handover = false, keep_epoch = false;
	int rc;

	if (du != NULL)
		du->lock_fd = -1;	/* before any way to durable_free */
	if (du == NULL || (stem = escape_path(cfg->mountpoint)) == NULL ||
	    (du->dir = strdup(cfg->state_dir)) == NULL ||
	    asprintf(&du->name, "%s.state", stem) == -1 ||
	    asprintf(&du->path, "%s/%s", du->dir, du->name) == -1) {
		log_error("state file: %m");
		goto err;
	}
	du->r = r;
	pthread_mutex_init(&du->lock, NULL);
	if (make_dirs(du->dir) == -1) {
		log_error("state_dir %s: %m", du->dir);
		goto err;
	}
	du->lock_fd = durable_lock(du->dir, stem);
	if (du->lock_fd == -1)
		goto err;
	du->crash_safe = bdir != NULL;
	if (secondary_set_durable(r, du->dir, bdir, stem) == -1) {
		log_error("state file: %m");
		goto err;
	}
	rc = statefile_read(du->path, &old, err, sizeof err);
	if (rc == -1) {
		log_error("%s; colofs will not guess the state of this disk: "
			  "fix or remove the file (see colofs(8))", err);
		goto err;
	}
	snprintf(du->found, sizeof du->found, "%s",
		 rc == 1 ? "new" : secondary_state_name(old.state));
	if (rc == 0) {
		switch (old.state) {
		case SECONDARY_NONE:
			/* A planned restart (durable_hand_epoch). */
			keep_epoch = old.journaled && !demote && !discard_local;
			if (old.s_behind) {
				du->sf.s_behind = true;
				secondary_record_error(r, "S may be behind the "
					"primary (s_consistent=0) until a "
					"primary connects; start needs force");
			}
			break;
		case SECONDARY_RUNNING:
			if (old.journaled && !demote) {
				handover = true;
				break;
			}
			du->sf.s_behind = true;
			log_warn("restarted after running: the secondary VM's "
				 "buffers are gone");
			secondary_record_error(r, "restarted after a crash or stop "
				"in state running: the secondary VM's buffers "
				"are gone; S holds every write the primary got "
				"a reply for, but it may have written on "
				"(s_consistent=0): a resync from the primary "
				"must come before start (or start force)");
			break;
		case SECONDARY_FAILOVER:
		case SECONDARY_FAILOVER_FAILED:
			if (demote) {
				log_error("--demote: a failover commit is "
					  "unfinished; let it finish first");
				goto err;
			}
			if (old.journaled) {
				start = SECONDARY_FAILOVER;
				resume = true;
				break;
			}
			start = SECONDARY_DONE;
			log_error("an interrupted failover had no journal");
			secondary_record_error(r, "the failover commit was "
				"interrupted and its buffers were in memory "
				"(no buffer_dir): S may mix the primary's and "
				"the VM's data; state done kept as a fence");
			break;
		case SECONDARY_DONE:
			/* Protected in place: a primary again, unless
			 * demoted (then the role goes with the state).
			 */
			if (!demote)
				memcpy(du->sf.protect, old.protect,
				       sizeof old.protect);
			if (demote) {
				log_warn("--demote: leaving done for none; "
					 "this disk takes primary writes again");
				du->sf.s_behind = true;
				secondary_record_error(r, "demoted from done by "
					"--demote: a resync from the new "
					"primary must come before start");
				break;
			}
			start = SECONDARY_DONE;
			break;
		}
	}
	du->sf.state = start;
	du->sf.journaled = resume;
	if (rc == 0)
		du->sf.gi = old.gi;
	/* The handed-over journals name the generation they belong to. */
	if (handover)
		secondary_set_journal_generation(r, old.gi.current);
	if (handover && resume_running(du, r, &old) == 0) {
		start = SECONDARY_RUNNING;
	} else {
		/* A failed handover is a crash in running. */
		if (handover)
			du->sf.s_behind = true;
		/* A first generation (a new disk, or a file from an older colofs),
		 * or a wiped one: --discard-local forgets the history, so that the
		 * primary finds nothing in common and copies the whole disk.
		 */
		if (du->sf.gi.current == 0 && gi_new(&du->sf.gi) == -1)
			goto err;
		if (discard_local) {
			if (start != SECONDARY_NONE) {
				log_error("--discard-local needs --demote (the state "
					  "is %s)", secondary_state_name(start));
				goto err;
			}
			if (gi_new(&du->sf.gi) == -1)
				goto err;
			gi_clear_history(&du->sf.gi);
			log_warn("--discard-local: this disk's writes since it "
				 "failed over will be overwritten by the primary's "
				 "next (full) sync");
			secondary_record_error(r, "--discard-local: this disk's data "
				"is discarded; the primary's next sync copies the "
				"whole disk");
		}
		secondary_set_s_consistent(r, !du->sf.s_behind);
		/* A failover's journals name the generation their buffers belong
		 * to (only a promotion changes it, and that ends running).
		 */
		secondary_set_journal_generation(r, du->sf.gi.current);
		if (keep_epoch)
			memcpy(du->sf.generation, old.generation,
			       sizeof du->sf.generation);
		if ((!keep_epoch &&
		     statefile_new_generation(du->sf.generation) == -1) ||
		    statefile_write(du->dir, du->name, &du->sf) == -1) {
			log_error("cannot write the state file %s", du->path);
			goto err;
		}
	}
	if (start == SECONDARY_DONE && secondary_restore_done(r) == -1) {
		log_error("state file: %m");
		goto err;
	}
	/* A failover killed before the state file said so left its files. */
	if (rc == 0 && start == SECONDARY_NONE)
		secondary_drop_leftovers(r);
	secondary_set_state_hook(r, hook, du);
	du->resume = resume;
	log_info("state file %s: was %s, now %s", du->path, du->found,
		 secondary_state_name(start));
	free(stem);
	return du;
err:
	free(stem);
	durable_free(du);
	return NULL;
}

int
durable_resume(struct durable *du)
{
	char err[1024];

	if (!du->resume)
		return 0;
	du->resume = false;
	log_info("resuming the failover commit left by the last run");
	if (secondary_resume_failover(du->r) == -1) {
		secondary_last_error(du->r, err, sizeof err);
		log_error("%s", err);
		secondary_set_state_hook(du->r, NULL, NULL);
		return -1;
	}
	return 0;
}

const char *
durable_protected(struct durable *du)
{
	return du->sf.protect[0] ? du->sf.protect : NULL;
}

int
durable_set_protected(struct durable *du, const char *uri)
{
	struct statefile sf;
	int ret;

	pthread_mutex_lock(&du->lock);
	sf = du->sf;
	snprintf(sf.protect, sizeof sf.protect, "%s", uri);
	ret = statefile_write(du->dir, du->name, &sf);
	if (ret >= 0)
		du->sf = sf;
	pthread_mutex_unlock(&du->lock);
	if (ret == -1)
		log_error("state file %s: cannot record protect: %m",
			  du->path);
	else
		log_info("state file %s: done, protected by %s", du->path,
			 uri);
	return ret == -1 ? -1 : 0;
}

void
durable_gi(struct durable *du, struct gi_set *out)
{
	pthread_mutex_lock(&du->lock);
	*out = du->sf.gi;
	pthread_mutex_unlock(&du->lock);
}

int
durable_adopt_gi(struct durable *du, uint64_t gen)
{
	struct statefile sf;
	size_t i;
	int ret;

	pthread_mutex_lock(&du->lock);
	sf = du->sf;
	if (sf.gi.current != gen) {
		for (i = GI_HISTORY - 1; i > 0; i--)
			sf.gi.history[i] = sf.gi.history[i - 1];
		sf.gi.history[0] = sf.gi.current;
		sf.gi.current = gen;
		sf.gi.since = (int64_t)time(NULL);
	}
	ret = statefile_write(du->dir, du->name, &sf);
	if (ret == 0)
		du->sf = sf;
	pthread_mutex_unlock(&du->lock);
	if (ret != 0) {
		if (ret == 1)
			errno = EIO;
		log_error("state file %s: cannot take generation %016" PRIx64
			  ": %m", du->path, gen);
		return -1;
	}
	return 0;
}

void
durable_status(void *opaque, FILE *fp)
{
	struct durable *du = opaque;
	struct statefile sf;
	char hist[GI_HISTORY * 17];

	pthread_mutex_lock(&du->lock);
	sf = du->sf;
	pthread_mutex_unlock(&du->lock);
	fprintf(fp, "state_file=%s\n", du->path);
	fprintf(fp, "generation=%s\n", sf.generation);
	gi_format_history(sf.gi.history, hist, sizeof hist);
	fprintf(fp, "gi_current=%016" PRIx64 "\n", sf.gi.current);
	fprintf(fp, "gi_since=%" PRId64 "\n", sf.gi.since);
	fprintf(fp, "gi_history=%s\n", hist);
	fprintf(fp, "restarted_from=%s\n", du->found);
	fprintf(fp, "failover_crash_safe=%s\n", du->crash_safe ? "yes" : "no");
}

void
durable_describe(void *opaque, char *buf, size_t len)
{
	struct durable *du = opaque;
	struct statefile sf;
	size_t n;

	pthread_mutex_lock(&du->lock);
	sf = du->sf;
	pthread_mutex_unlock(&du->lock);
	gi_format(&sf.gi, buf, len);
	/* The incarnation (gi.h): the state file's generation is the epoch
	 * a primary may reconnect to.
	 */
	n = strlen(buf);
	if (n + 1 < len) {
		buf[n++] = ' ';
		gi_format_run(secondary_state_name(sf.state), sf.generation,
			      buf + n, len - n);
	}
}

/* Renames DIR/STEM.DISK.WHAT to .discarded, if it exists.  0, or -1. */
static int
discard_file(const char *dir, const char *stem, const char *disk,
	     const char *what)
{
	char from[4096], to[4096 + 16];

	if (snprintf(from, sizeof from, "%s/%s.%s.%s", dir, stem, disk,
		     what) >= (int) sizeof from) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(to, sizeof to, "%s.discarded", from);
	if (rename(from, to) == -1) {
		if (errno == ENOENT)
			return 0;
		log_error("rename %s: %m", from);
		return -1;
	}
	log_warn("--discard-failover: %s is now %s", from, to);
	return 0;
}

int
durable_discard_failover(const struct config *cfg)
{
	struct statefile sf;
	char err[512], *stem = escape_path(cfg->mountpoint), *name = NULL;
	int rc, ret = -1;
	size_t i;

	if (stem == NULL || asprintf(&name, "%s.state", stem) == -1) {
		name = NULL;
		log_error("--discard-failover: %m");
		goto out;
	}
	{
		char path[4096];

		snprintf(path, sizeof path, "%s/%s", cfg->state_dir, name);
		rc = statefile_read(path, &sf, err, sizeof err);
	}
	if (rc == -1) {
		log_error("--discard-failover: %s", err);
		goto out;
	}
	if (rc == 1 || (sf.state != SECONDARY_FAILOVER &&
			sf.state != SECONDARY_FAILOVER_FAILED)) {
		log_info("--discard-failover: no interrupted failover");
		ret = 1;
		goto out;
	}
	for (i = 0; i < cfg->ndisks; i++) {
		const char *disk = cfg->disks[i].name;

		if (discard_file(cfg->state_dir, stem, disk, "journal") == -1 ||
		    (cfg->buffer_dir &&
		     (discard_file(cfg->buffer_dir, stem, disk, "hidden") == -1 ||
		      discard_file(cfg->buffer_dir, stem, disk, "active") == -1)))
			goto out;
	}
	/* No journal: the start keeps the fence (done) and says why. */
	sf.journaled = false;
	if (statefile_write(cfg->state_dir, name, &sf) == -1) {
		log_error("--discard-failover: cannot write the state file");
		goto out;
	}
	log_warn("--discard-failover: the interrupted failover is given up; "
		 "S may mix the primary's and the VM's data");
	ret = 0;
out:
	free(stem);
	free(name);
	return ret;
}
