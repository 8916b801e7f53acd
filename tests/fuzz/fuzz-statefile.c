/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the state file's reader (core/statefile.c), which reads
 * a file in state_dir, a directory another user might once have written.
 * The input is the whole file.  Invariants: it returns 0 (a valid state and
 * a 32-hex-digit generation), 1 (no file: never here) or -1 with a reason;
 * and a file it accepts, written back by statefile_write, reads back the
 * same.  Build and run: tests/fuzz/run-files [SECONDS] [WORKDIR].
 */
#include <assert.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "statefile.h"

static char dir[64], path[128];
static int fd = -1;

static void
cleanup(void)
{
	char other[160];

	snprintf(other, sizeof other, "%s/back.state", dir);
	unlink(other);
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct statefile sf, back;
	char err[512] = "";
	int r;

	if (fd == -1) {
		log_set_quiet(true);
		strcpy(dir, "/tmp/colofs-fuzz-state.XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(path, sizeof path, "%s/f.state", dir);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd == -1)
			abort();
		atexit(cleanup);
	}
	if (ftruncate(fd, 0) == -1 ||
	    (size && pwrite(fd, data, size, 0) != (ssize_t) size))
		abort();
	r = statefile_read(path, &sf, err, sizeof err);
	assert(r == 0 || r == -1);
	if (r == -1) {
		assert(err[0] != '\0');
		return 0;
	}
	assert(sf.state >= REPLICA_NONE && sf.state <= REPLICA_DONE);
	assert(strlen(sf.generation) == STATEFILE_GEN_LEN);
	/* Rarely reached (an exact format); its write-back is worth the
	 * fsync then.
	 */
	assert(statefile_write(dir, "back.state", &sf) == 0);
	snprintf(path + strlen(dir), sizeof path - strlen(dir), "/back.state");
	r = statefile_read(path, &back, err, sizeof err);
	snprintf(path + strlen(dir), sizeof path - strlen(dir), "/f.state");
	assert(r == 0 && back.state == sf.state && back.journaled == sf.journaled &&
	       strcmp(back.generation, sf.generation) == 0);
	return 0;
}
