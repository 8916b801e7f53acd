/* SPDX-License-Identifier: MIT */
/* The failover commit's journal.
 *
 * A failover commit copies V's buffered ranges into S.  If the process
 * dies half way, S holds some of V and some of the primary's last data,
 * and the buffers are the only copy of the rest.  So before the commit
 * writes S, the replica makes the buffers durable (files in buffer_dir)
 * and writes, per disk, a journal of what the commit must do:
 *
 *   colofs-journal 1 SIZE	header: the disk's size
 *   A OFF LEN			snapshot: V's bytes there are in active
 *   H OFF LEN			          ... in hidden (where active is not)
 *   ...
 *   D OFF LEN			appended during the commit: a view write
 *				put newer data into S; commit nothing there
 *   A OFF LEN			appended after failover_failed: a view write
 *				went into active there
 *
 * Replaying the records in order over empty maps (A inserts into active,
 * H into hidden, D removes from both) gives back the maps the commit
 * still has to write; committing a range twice writes the same bytes, so
 * a resumed commit may start again from the beginning.
 *
 * The snapshot is written to NAME.tmp, fsync'd and renamed (journal_commit)
 * before the commit starts.  Records appended later are one write(2) each
 * and not synced: they survive the death of the process (the kernel has
 * them), and an fsync of the journal when the VM flushes makes them
 * survive a power cut.  A record torn by a power cut is the last line,
 * without its newline: replay ignores it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdio.h"
#include "journal.h"
#include "log.h"
#include "statefile.h"

static int
journal_path(char *out, size_t outlen, const char *dir, const char *name,
	     const char *suffix)
{
	if (snprintf(out, outlen, "%s/%s%s", dir, name, suffix) >=
	    (int) outlen) {
		errno = ENAMETOOLONG;
		log_error("journal %s/%s: %m", dir, name);
		return -1;
	}
	return 0;
}

int
journal_create(const char *dir, const char *name, uint64_t size,
	       const struct journal_rec *recs, size_t n)
{
	char path[4096];
	FILE *fp;
	size_t i;
	int fd;

	if (journal_path(path, sizeof path, dir, name, ".tmp") == -1)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		  0600);
	if (fd == -1) {
		log_error("create %s: %m", path);
		return -1;
	}
	/* Buffered through a FILE on a dup: the snapshot can be long. */
	fp = fdopen(dup(fd), "w");
	if (fp == NULL)
		goto err;
	fprintf(fp, "colofs-journal 1 %" PRIu64 "\n", size);
	for (i = 0; i < n; i++)
		fprintf(fp, "%c %" PRIu64 " %" PRIu64 "\n", recs[i].op,
			recs[i].off, recs[i].len);
	if (fflush(fp) == EOF || ferror(fp)) {
		int saved = errno;

		fclose(fp);
		errno = saved;
		goto err;
	}
	if (fclose(fp) == EOF)
		goto err;
	return fd;
err:
	{
		int saved = errno;

		log_error("write %s: %m", path);
		close(fd);
		unlink(path);
		errno = saved;
	}
	return -1;
}

int
journal_commit(int fd, const char *dir, const char *name)
{
	char tmp[4096], dst[4096];

	if (journal_path(tmp, sizeof tmp, dir, name, ".tmp") == -1 ||
	    journal_path(dst, sizeof dst, dir, name, "") == -1)
		return -1;
	if (fsync(fd) == -1) {
		log_error("fsync %s: %m", tmp);
		return -1;
	}
	if (rename(tmp, dst) == -1) {
		log_error("rename %s to %s: %m", tmp, dst);
		return -1;
	}
	return durable_sync_dir(dir);
}

int
journal_append(int fd, char op, uint64_t off, uint64_t len)
{
	char line[80];
	int n = snprintf(line, sizeof line, "%c %" PRIu64 " %" PRIu64 "\n",
			 op, off, len);
	ssize_t w;

	do
		w = write(fd, line, (size_t) n);
	while (w == -1 && errno == EINTR);
	if (w == -1) {
		log_error("append to a failover journal: %m");
		return -1;
	}
	if (w != n) {
		errno = ENOSPC;
		log_error("append to a failover journal: short write");
		return -1;
	}
	return 0;
}

int
journal_replay(const char *path, uint64_t size,
	       int (*fn)(void *opaque, const struct journal_rec *rec),
	       void *opaque)
{
	FILE *fp = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t hsize;
	int ret = -1, lineno = 0;

	if (fp == NULL) {
		log_error("open journal %s: %m", path);
		return -1;
	}
	while ((n = getline(&line, &cap, fp)) != -1) {
		struct journal_rec rec;
		char op, end;

		lineno++;
		if (line[n - 1] != '\n')
			break;			/* torn by a crash: never acted on */
		if (lineno == 1) {
			if (sscanf(line, "colofs-journal 1 %" SCNu64 "%c",
				   &hsize, &end) != 2 || end != '\n' ||
			    hsize != size) {
				log_error("%s: not a journal of a disk of %"
					  PRIu64 " bytes", path, size);
				errno = EINVAL;
				goto out;
			}
			continue;
		}
		if (sscanf(line, "%c %" SCNu64 " %" SCNu64 "%c", &op, &rec.off,
			   &rec.len, &end) != 4 || end != '\n' ||
		    (op != JOURNAL_ACTIVE && op != JOURNAL_HIDDEN &&
		     op != JOURNAL_DROP) ||
		    rec.off > size || rec.len > size - rec.off) {
			log_error("%s:%d: not a journal record", path, lineno);
			errno = EINVAL;
			goto out;
		}
		rec.op = op;
		if (fn(opaque, &rec) == -1)
			goto out;
	}
	if (ferror(fp)) {
		log_error("read journal %s: %m", path);
		goto out;
	}
	if (lineno == 0) {
		log_error("%s: empty journal", path);
		errno = EINVAL;
		goto out;
	}
	ret = 0;
out:
	{
		int saved = errno;

		free(line);
		fclose(fp);
		errno = saved;
	}
	return ret;
}
