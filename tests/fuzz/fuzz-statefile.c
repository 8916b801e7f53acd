/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the state file's reader (core/statefile.c), which reads
 * a file in state_dir, a directory another user might once have written.
 * The input is the whole file.  Invariants: it returns 0 (a valid state and
 * a 32-hex-digit generation), 1 (no file: never here) or -1 with a reason;
 * and a file it accepts, written back by statefile_write, reads back the
 * same.  Build and run: tests/fuzz/run-files [SECONDS] [WORKDIR].
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuzz-file.h"
#include "statefile.h"

static void
cleanup_back(void)
{
	char back[160];

	snprintf(back, sizeof back, "%s/back.state", fuzz_dir);
	unlink(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool registered;
	struct statefile sf, back;
	char err[512] = "", backpath[160];
	const char *path = fuzz_file_put("f.state", data, size);
	int r;

	if (!registered) {
		atexit(cleanup_back);	/* runs before fuzz_file_cleanup */
		registered = true;
	}
	r = statefile_read(path, &sf, err, sizeof err);
	assert(r == 0 || r == -1);
	if (r == -1) {
		assert(err[0] != '\0');
		return 0;
	}
	assert(sf.state >= SECONDARY_NONE && sf.state <= SECONDARY_DONE);
	assert(strlen(sf.generation) == STATEFILE_GEN_LEN);
	/* Rarely reached (an exact format); its write-back is worth the
	 * fsync then.
	 */
	assert(statefile_write(fuzz_dir, "back.state", &sf) == 0);
	snprintf(backpath, sizeof backpath, "%s/back.state", fuzz_dir);
	r = statefile_read(backpath, &back, err, sizeof err);
	assert(r == 0 && back.state == sf.state &&
	       back.journaled == sf.journaled &&
	       strcmp(back.generation, sf.generation) == 0);
	return 0;
}
