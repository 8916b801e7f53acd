/* SPDX-License-Identifier: MIT */
/* colofs: the daemon.  Reads the config, opens the images, builds the
 * secondary, starts the NBD listener and mounts the FUSE filesystem, then
 * serves until unmounted or signalled.
 *
 * Start-up order, and why:
 *   1. config_load, checks of the mountpoint: before forking, so that the
 *      common mistakes print their message from the process the user ran;
 *   2. fork (daemon.c) unless -f: before any thread exists;
 *   3. images, secondary, NBD bind, mount: any failure undoes what was done
 *      (nothing stays mounted) and exits 1; the parent exits with it;
 *   4. the listener's threads start with SIGTERM/SIGINT/SIGHUP blocked,
 *      as the FUSE loop's workers do, so that SIGTERM and SIGINT reach the main
 *      thread, whose handler (libfuse's) ends the session loop; SIGHUP
 *      stays blocked everywhere and a thread of its own takes it with
 *      sigwait to re-read the TLS credentials (nbd_server_reload);
 *   5. ready: the parent exits 0, logging moves to syslog.
 *
 * Shutdown (a signal, or fusermount3 -u): the session loop returns once
 * every request it took has been answered; then the mount goes, the
 * listener finishes its requests and closes, a failover commit under way
 * runs to its end, the disks are flushed and the secondary freed.  Exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "durable.h"
#include "fuse/fusefs.h"
#include "handover.h"
#include "holder.h"
#include "image.h"
#include "log.h"
#include "link/primary-link.h"
#include "nbd/nbd.h"
#include "primary.h"
#include "protect.h"
#include "secondary.h"
#include "store.h"
#include "trust.h"

#ifndef COLOFS_VERSION
#define COLOFS_VERSION "0.1.0"
#endif

enum {
	EXIT_USAGE = 2,
	OPT_CHECK = 256,
	OPT_DUMP,
	OPT_DEMOTE,
	OPT_DISCARD_LOCAL,
	OPT_DISCARD_FAILOVER,
	OPT_HOLDER,
};

static void
usage(FILE *fp)
{
	fputs("Usage: colofs -c FILE [-f] [-d] [--demote [--discard-local]]\n"
	      "                    [--discard-failover]\n"
	      "                    [--check-config] [--dump-config]\n"
	      "       colofs --help | --version\n"
	      "\n"
	      "The secondary side of COLO block replication: each disk of\n"
	      "the config appears as a file under the mountpoint (the\n"
	      "secondary VM's view), the primary's writes arrive over NBD,\n"
	      "and MOUNTPOINT/.colo/ctl takes start, checkpoint, stop and\n"
	      "failover.  With mode = primary, the primary side: the disk\n"
	      "files mirror their writes to the secondary through libnbd\n"
	      "(ctl: start, checkpoint, failover, stop, resync [full]).\n"
	      "\n"
	      "  -c, --config FILE  the deployment file (INI; see colofs(8))\n"
	      "  -f, --foreground   do not daemonize; log to stderr\n"
	      "  -d, --debug        log debug messages too\n"
	      "      --check-config validate FILE (and the paths it names),\n"
	      "                     then exit\n"
	      "      --dump-config  print the effective config, defaults\n"
	      "                     included, then exit\n"
	      "      --demote       leave the state done that a failover\n"
	      "                     left (see colofs(8)): start in none\n"
	      "      --discard-local  with --demote: this side loses a\n"
	      "                     split brain; the primary's next sync\n"
	      "                     copies the whole disk here\n"
	      "      --discard-failover  give up an interrupted failover\n"
	      "                     whose journal or buffers are lost: keep\n"
	      "                     the files aside, start fenced in done\n"
	      "      --holder       live restart: a holder process keeps\n"
	      "                     the mount and the listener and starts\n"
	      "                     the worker again when it dies, or on\n"
	      "                     \"restart\" (see colofs(8))\n"
	      "  -h, --help         this text\n"
	      "  -V, --version      the version\n"
	      "\n"
	      "Without -f, colofs returns once the mount and the listener\n"
	      "are ready (exit 0), or exits non-zero with the reason and\n"
	      "nothing mounted.  SIGTERM, SIGINT or fusermount3 -u stop it;\n"
	      "SIGHUP re-reads the TLS credentials.\n",
	      fp);
}

/* Replaces *s by its canonical form (the file must exist). */
static int
canonicalize(char **s, const char *what)
{
	char real[PATH_MAX], *dup;

	if (!realpath(*s, real)) {
		log_error("%s %s: %m", what, *s);
		return -1;
	}
	dup = strdup(real);
	if (!dup)
		return -1;
	free(*s);
	*s = dup;
	return 0;
}

/* A key file that group or others can read: a warning (the daemon is
 * root's; the key is the disk's only protection on the network).
 */
static void
warn_readable(const char *what, const char *dir, const char *file)
{
	char path[PATH_MAX];
	struct stat st;

	if (file == NULL)
		return;
	if (dir)
		snprintf(path, sizeof path, "%s/%s", dir, file);
	else
		snprintf(path, sizeof path, "%s", file);
	if (stat(path, &st) == 0 && (st.st_mode & 0077))
		log_warn("%s %s: readable by group or others (mode %04o): "
			 "chmod 600 %s", what, path,
			 (unsigned)(st.st_mode & 07777), path);
}

/* Warnings: what works but an operator should not leave so. */
static void
check_warnings(const struct config *cfg)
{
	size_t i;

	warn_readable("tls_psk_file", NULL, cfg->tls_psk_file);
	if (cfg->tls_certificates)
		warn_readable("tls_certificates", cfg->tls_certificates,
			      "server-key.pem");
	for (i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *d = &cfg->disks[i];

		warn_readable("secondary_tls_psk_file", NULL, d->tls_psk_file);
		if (d->tls_certificates)
			warn_readable("secondary_tls_certificates",
				      d->tls_certificates, "client-key.pem");
	}
	if (cfg->mode == CONFIG_MODE_SECONDARY &&
	    cfg->buffer == CONFIG_BUFFER_MEMORY && cfg->buffer_limit == 0)
		log_warn("buffer = memory without buffer_limit: a secondary "
			 "VM that writes much between checkpoints can take "
			 "all the host's memory; set buffer_limit (or "
			 "buffer = file)");
}

/* --check-config: what config_load cannot know, the paths it names. */
static int
check_paths(const struct config *cfg)
{
	struct stat st;
	enum image_format fmt;
	size_t i;
	int bad = 0;

	/* A live restart under systemd finds its own mount there. */
	if (fusefs_colofs_mounted(cfg->mountpoint))
		log_info("mountpoint %s: a colofs mount; only a colofs "
			 "--holder with it in systemd's fd store can start",
			 cfg->mountpoint);
	else if (fusefs_check_mountpoint(cfg->mountpoint) == -1)
		bad = 1;
	fusefs_check_access(cfg);
	/* A primary makes state_dir if missing: its parent must exist. */
	if (cfg->mode == CONFIG_MODE_PRIMARY && stat(cfg->state_dir, &st) == -1) {
		char parent[PATH_MAX];
		char *slash;

		snprintf(parent, sizeof parent, "%s", cfg->state_dir);
		slash = strrchr(parent, '/');
		if (slash != NULL)
			*(slash == parent ? slash + 1 : slash) = '\0';
		if (errno != ENOENT || stat(parent, &st) == -1 ||
		    !S_ISDIR(st.st_mode)) {
			log_error("state_dir %s: cannot be made", cfg->state_dir);
			bad = 1;
		}
	} else if (cfg->mode == CONFIG_MODE_PRIMARY && !S_ISDIR(st.st_mode)) {
		log_error("state_dir %s: not a directory", cfg->state_dir);
		bad = 1;
	}
	if (cfg->buffer_dir) {
		if (stat(cfg->buffer_dir, &st) == -1) {
			log_error("buffer_dir %s: %m", cfg->buffer_dir);
			bad = 1;
		} else if (!S_ISDIR(st.st_mode)) {
			log_error("buffer_dir %s: not a directory",
				  cfg->buffer_dir);
			bad = 1;
		}
	}
	if (nbd_tls_check(cfg) == -1)
		bad = 1;
	if (trust_check_config(cfg) == -1)
		bad = 1;
	check_warnings(cfg);
	for (i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *d = &cfg->disks[i];

		if (access(d->image, R_OK | W_OK) == -1) {
			log_error("disk %s: image %s: %m", d->name, d->image);
			bad = 1;
		} else if (d->format == IMAGE_FORMAT_RAW) {
			/* Never probed: its byte 0 is the guest's. */
		} else if (image_probe(d->image, &fmt) == -1) {
			bad = 1;
		} else if (d->format == IMAGE_FORMAT_QCOW2 &&
			   fmt != IMAGE_FORMAT_QCOW2) {
			log_error("disk %s: image %s is not qcow2 (no qcow "
				  "magic)", d->name, d->image);
			bad = 1;
		}
		/* In use by another colofs or a QEMU writer? */
		if (access(d->image, R_OK) == 0 &&
		    image_check_owner(d->image) == -1)
			bad = 1;
		/* A bitmap of the old, per-disk name: the mv to run. */
		if (cfg->mode == CONFIG_MODE_PRIMARY) {
			char *stem = durable_stem(cfg->mountpoint), *bm;

			bm = stem ? durable_bitmap_path(cfg->state_dir, stem,
							d->name) : NULL;
			if (bm == NULL)
				bad = 1;
			free(bm);
			free(stem);
		}
	}
	return bad ? -1 : 0;
}

/* Blocks (how = SIG_BLOCK) or restores the signals that stop us. */
static void
stop_signals(int how, sigset_t *old)
{
	sigset_t set;

	if (how == SIG_SETMASK) {
		pthread_sigmask(SIG_SETMASK, old, NULL);
		return;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

/* SIGHUP stays blocked in the main thread (and the FUSE workers it
 * starts) while the session runs: the reloader takes it.
 */
static void
block_sighup(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* SIGHUP re-reads the TLS credentials.  It stays blocked in every
 * thread; this one takes it with sigwait, so libfuse's handler (which
 * would end the session) never sees it.
 */
struct reloader {
	pthread_t thread;
	struct nbd_server *nbd;
	atomic_bool stop;
	bool started;
};

static void *
reload_main(void *arg)
{
	struct reloader *rl = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (atomic_load(&rl->stop))
			break;
		log_info("SIGHUP: reloading");
		if (rl->nbd)
			nbd_server_reload(rl->nbd);
	}
	return NULL;
}

static void
reloader_stop(struct reloader *rl)
{
	if (!rl->started)
		return;
	atomic_store(&rl->stop, true);
	pthread_kill(rl->thread, SIGHUP);
	pthread_join(rl->thread, NULL);
	rl->started = false;
}

/* After failover S is the only copy of the disk, and a half-done commit
 * leaves it a mix of the primary's and the secondary's data: let it end
 * rather than cancel it (secondary_free would).
 */
static void
finish_commit(struct secondary *r)
{
	switch (secondary_state(r)) {
	case SECONDARY_FAILOVER:
		log_info("waiting for the failover commit to finish");
		secondary_wait_commit(r);
		if (secondary_state(r) == SECONDARY_FAILOVER_FAILED)
			log_error("the failover commit failed; the view's "
				  "uncommitted data is lost");
		break;
	case SECONDARY_FAILOVER_FAILED:
		log_error("stopping after a failed failover commit; the "
			  "view's uncommitted data is lost");
		break;
	default:
		break;
	}
}

static void
lost(void *arg, size_t i, const char *why)
{
	primary_link_lost(arg, i, why);
}

/* mode = primary: the primary engine and its libnbd link instead of the
 * secondary and the listener; the same mount, signals and daemonizing.
 * The state directory (bitmaps) is made if missing.
 */
static const struct colo_status_part holder_part = { handover_status, NULL };

static int
serve_primary(struct config *cfg, bool foreground)
{
	struct primary_disk_config *dcs = NULL;
	struct primary_config pc;
	struct primary_link *link = NULL;
	struct primary *p = NULL;
	struct fusefs *fs = NULL;
	char **paths = NULL, **al_paths = NULL, *stem = NULL;
	sigset_t oldmask;
	size_t i, opened = 0;
	int rc = 1, lock_fd = -1;

	stop_signals(SIG_BLOCK, &oldmask);
	if (mkdir(cfg->state_dir, 0700) == -1 && errno != EEXIST) {
		log_error("state_dir %s: %m", cfg->state_dir);
		goto out;
	}
	stem = durable_stem(cfg->mountpoint);
	if (!stem || (lock_fd = durable_lock(cfg->state_dir, stem)) == -1)
		goto out;
	link = primary_link_new(cfg);
	dcs = calloc(cfg->ndisks, sizeof *dcs);
	paths = calloc(cfg->ndisks, sizeof *paths);
	al_paths = calloc(cfg->ndisks, sizeof *al_paths);
	if (!link || !dcs || !paths || !al_paths) {
		log_error("out of memory");
		goto out;
	}
	for (i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *d = &cfg->disks[i];

		paths[i] = durable_bitmap_path(cfg->state_dir, stem, d->name);
		if (!paths[i])
			goto out;
		/* Named per instance, as the bitmap is (durable_stem). */
		if (asprintf(&al_paths[i], "%s/%s.%s.al", cfg->state_dir,
			     stem, d->name) == -1) {
			al_paths[i] = NULL;
			goto out;
		}
		dcs[i].al_path = al_paths[i];
		dcs[i].name = d->name;
		dcs[i].uri = d->secondary;
		dcs[i].bitmap_path = paths[i];
		dcs[i].img = image_open(d->image, d->format, cfg->buffer_dir,
					d->name);
		if (!dcs[i].img)
			goto out;
		opened = i + 1;
		log_info("disk %s: %s (%s, %llu bytes), secondary %s", d->name,
			 d->image, dcs[i].img->ops->name,
			 (unsigned long long)dcs[i].img->size, d->secondary);
	}
	pc = (struct primary_config){
		.ndisks = cfg->ndisks,
		.disks = dcs,
		.granularity = cfg->dirty_granularity,
		.timeout_ms = cfg->secondary_timeout_ms,
		/* An idle link is probed after half the timeout. */
		.keepalive_ms = cfg->secondary_timeout_ms / 2 ?
				cfg->secondary_timeout_ms / 2 : 1,
		.al_extent = cfg->al_extent,
		.al_extents = cfg->al_extents,
		.link = &primary_link_ops,
		.link_opaque = link,
	};
	opened = 0;		/* primary_new takes the images */
	p = primary_new(&pc);
	if (!p)
		goto out;
	primary_link_on_lost(link, lost, p);
	primary_link_on_vouch(link, primary_vouch, p);
	fs = fusefs_new_primary(cfg, p, &holder_part, 1);
	if (!fs)
		goto out;
	handover_ready(foreground);
	if (!foreground) {
		daemon_ready();
		if (chdir("/") == -1)
			log_warn("chdir /: %m");
	}
	log_info("ready: %s on %s (primary)", cfg->path, cfg->mountpoint);
	stop_signals(SIG_SETMASK, &oldmask);
	/* A primary has no credentials to reload, and SIGHUP must not stop
	 * it under a running VM (libfuse's handler would): it stays blocked.
	 */
	block_sighup();
	rc = fusefs_run(fs) == -1 ? 1 : 0;
	stop_signals(SIG_BLOCK, &oldmask);
	fusefs_unmount(fs);
out:
	fusefs_free(fs);
	/* Drains writes, closes the links cleanly, saves the bitmaps. */
	primary_free(p);
	primary_link_free(link);
	for (i = 0; i < opened; i++)
		image_close(dcs[i].img);
	for (i = 0; paths && i < cfg->ndisks; i++)
		free(paths[i]);
	for (i = 0; al_paths && i < cfg->ndisks; i++)
		free(al_paths[i]);
	free(paths);
	free(al_paths);
	free(dcs);
	free(stem);
	if (lock_fd != -1)
		close(lock_fd);
	if (rc == 0)
		log_info("stopped cleanly");
	return rc;
}

static int
serve(struct config *cfg, bool foreground, bool demote, bool discard_local)
{
	struct store_factory factory;
	struct secondary *r = NULL;
	struct nbd_server *nbd = NULL;
	struct colo_status_part status_parts[3];
	struct durable *du = NULL;
	struct protect *pr = NULL;
	size_t nparts = 0;
	struct fusefs *fs = NULL;
	struct image *img;
	struct reloader reloader = { .started = false };
	sigset_t oldmask;
	size_t i;
	int rc = 1;

	/* Until the loop runs, a stop signal waits (then ends it at once). */
	stop_signals(SIG_BLOCK, &oldmask);
	factory = cfg->buffer == CONFIG_BUFFER_FILE ?
		store_file_factory(cfg->buffer_dir) : store_memory_factory();
	r = secondary_new(&factory);
	if (!r) {
		log_error("cannot create the replica: %m");
		goto out;
	}
	secondary_set_buffer_limit(r, cfg->buffer_limit);
	for (i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *d = &cfg->disks[i];

		img = image_open(d->image, d->format, cfg->buffer_dir,
				 d->name);
		if (!img)
			goto out;
		if (image_write_behind(img, cfg->write_behind) == -1) {
			image_close(img);
			goto out;
		}
		/* Takes img, also on failure. */
		if (!secondary_add_disk(r, d->name, img)) {
			log_error("disk %s: %m", d->name);
			goto out;
		}
		log_info("disk %s: %s (%s, %llu bytes)", d->name, d->image,
			 img->ops->name, (unsigned long long)img->size);
	}
	/* Before any I/O can arrive: the state decides what is accepted. */
	du = durable_open(cfg, r, demote, discard_local);
	if (!du)
		goto out;
	/* Tracks S's own writes from a failover on, for protect: set before
	 * an interrupted failover's commit resumes, which writes S at once.
	 */
	pr = protect_new(cfg, r, du);
	if (!pr || durable_resume(du) == -1 ||
	    (!discard_local && protect_adopt(pr) == -1))
		goto out;
	/* Spares with their pages faulted in, made in the background while
	 * colofs waits for start: the first epochs do not fault (issue 18).
	 * Not for a disk that serves as a primary again (protected).
	 */
	if (!durable_protected(du) &&
	    secondary_warm(r, cfg->buffer_warm) == -1) {
		log_error("buffer_warm: %m");
		goto out;
	}
	if (cfg->listen) {
		nbd = nbd_server_new(r, cfg);
		if (!nbd)
			goto out;
		/* The generation identifiers go to the primary (core/gi.h). */
		nbd_server_set_describe(nbd, protect_describe, pr);
	}
	if (nbd)
		status_parts[nparts++] =
			(struct colo_status_part){ nbd_server_status, nbd };
	status_parts[nparts++] =
		(struct colo_status_part){ durable_status, du };
	status_parts[nparts++] = holder_part;
	fs = fusefs_new(cfg, r, status_parts, nparts);
	if (!fs)
		goto out;
	fusefs_set_protect(fs, pr);
	/* Protected in place before: a primary again, in none. */
	if (durable_protected(du) &&
	    fusefs_protect(fs, durable_protected(du), false, false) == -1)
		goto out;
	if (nbd && nbd_server_start(nbd) == -1)
		goto out;
	reloader.nbd = nbd;
	if (pthread_create(&reloader.thread, NULL, reload_main, &reloader) == 0)
		reloader.started = true;
	else
		log_warn("no SIGHUP thread: SIGHUP will not reload");
	handover_ready(foreground);
	if (!foreground) {
		daemon_ready();
		if (chdir("/") == -1)
			log_warn("chdir /: %m");
	}
	log_info("ready: %s on %s%s%s", cfg->path, cfg->mountpoint,
		 cfg->listen ? ", NBD on " : "", cfg->listen ? cfg->listen : "");
	stop_signals(SIG_SETMASK, &oldmask);
	block_sighup();
	rc = fusefs_run(fs) == -1 ? 1 : 0;
	stop_signals(SIG_BLOCK, &oldmask);
	/* No new view requests: the session answered every one it took. */
	fusefs_unmount(fs);
out:
	reloader_stop(&reloader);
	/* The listener first: its in-flight writes complete here. */
	nbd_server_free(nbd);
	fusefs_free(fs);
	/* A planned restart in running: no I/O comes any more.  In none,
	 * S has every write answered: the epoch goes on (gi.h).
	 */
	if (r && du && handover_restart_requested() &&
	    secondary_state(r) == SECONDARY_RUNNING)
		durable_handover(du);
	else if (r && du && handover_restart_requested() &&
		 secondary_state(r) == SECONDARY_NONE)
		durable_hand_epoch(du);
	if (r)
		finish_commit(r);
	/* No commit marks the bitmaps any more.  The primary of a protect:
	 * drains, closes its links, saves; before secondary_free, which
	 * closes the image it borrowed.
	 */
	protect_free(pr);
	/* Waits for a running commit (cancelling it), flushes the images. */
	secondary_free(r);
	durable_free(du);
	if (rc == 0)
		log_info("stopped cleanly");
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "dump-config", no_argument, NULL, OPT_DUMP },
		{ "demote", no_argument, NULL, OPT_DEMOTE },
		{ "discard-local", no_argument, NULL, OPT_DISCARD_LOCAL },
		{ "discard-failover", no_argument, NULL, OPT_DISCARD_FAILOVER },
		{ "holder", no_argument, NULL, OPT_HOLDER },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool foreground = false, check = false, dump = false, demote = false;
	bool discard_local = false;
	bool discard = false, holder = false, worker;
	struct config *cfg;
	char err[4096];
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:fdhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'f': foreground = true; break;
		case 'd': log_set_debug(true); break;
		case OPT_CHECK: check = true; break;
		case OPT_DUMP: dump = true; break;
		case OPT_DEMOTE: demote = true; break;
		case OPT_DISCARD_LOCAL: discard_local = true; break;
		case OPT_DISCARD_FAILOVER: discard = true; break;
		case OPT_HOLDER: holder = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("colofs %s\n", COLOFS_VERSION); return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "colofs: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (discard_local && !demote) {
		fprintf(stderr, "colofs: --discard-local needs --demote\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!path) {
		fprintf(stderr, "colofs: -c FILE is required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);

	cfg = config_load(path, err, sizeof err);
	if (!cfg) {
		/* Every problem, one per line. */
		for (char *l = err, *nl; l; l = nl) {
			nl = strchr(l, '\n');
			if (nl)
				*nl++ = '\0';
			fprintf(stderr, "colofs: %s\n", l);
		}
		return 1;
	}
	if (check || dump) {
		rc = 0;
		if (check) {
			rc = check_paths(cfg) == -1 ? 1 : 0;
			if (rc == 0)
				fprintf(check && dump ? stderr : stdout,
					"%s: ok\n", path);
		}
		if (dump && rc == 0)
			config_dump(cfg, stdout);
		config_free(cfg);
		return rc;
	}

	/* Mistakes the user should see right away, before any fork.  A
	 * mount handed over (to a worker by its holder, to a holder by
	 * systemd's fd store) is mounted already.
	 */
	worker = handover_is_worker();
	if ((!handover_has_mount() &&
	     fusefs_check_mountpoint(cfg->mountpoint) == -1) ||
	    trust_check_config(cfg) == -1 ||
	    canonicalize(&cfg->mountpoint, "mountpoint") == -1 ||
	    (cfg->buffer_dir &&
	     canonicalize(&cfg->buffer_dir, "buffer_dir") == -1)) {
		config_free(cfg);
		return 1;
	}
	if (!foreground)
		daemon_log_fallback(cfg->state_dir, cfg->mountpoint);
	if (!foreground && !worker && daemon_start() == -1) {
		config_free(cfg);
		return 1;
	}
	if (demote && cfg->mode == CONFIG_MODE_PRIMARY) {
		fprintf(stderr, "colofs: --demote is for mode = secondary\n");
		config_free(cfg);
		return EXIT_USAGE;
	}
	/* A holder's workers (the same argv) do not discard again. */
	if (discard && !worker && (cfg->mode == CONFIG_MODE_PRIMARY ||
				   durable_discard_failover(cfg) == -1)) {
		if (cfg->mode == CONFIG_MODE_PRIMARY)
			fprintf(stderr, "colofs: --discard-failover is for "
				"mode = secondary\n");
		config_free(cfg);
		return 1;
	}
	if (holder && !worker)
		rc = holder_main(cfg, foreground, argv);
	else
		rc = handover_exit_status(cfg->mode == CONFIG_MODE_PRIMARY ?
					serve_primary(cfg, foreground) :
					serve(cfg, foreground, demote,
					      discard_local));
	config_free(cfg);
	return rc;
}
