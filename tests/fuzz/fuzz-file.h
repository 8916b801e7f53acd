/* SPDX-License-Identifier: MIT */
/* For the file parsers' fuzz targets: the input as a file, DIR/NAME in a
 * private temp dir made at the first call and removed at exit.
 */
#ifndef COLOFS_FUZZ_FILE_H
#define COLOFS_FUZZ_FILE_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char fuzz_dir[64], fuzz_path[128];
static int fuzz_fd = -1;

static void
fuzz_file_cleanup(void)
{
	unlink(fuzz_path);
	rmdir(fuzz_dir);
}

/* Makes DIR/name hold exactly data; returns its path (fuzz_path). */
static const char *
fuzz_file_put(const char *name, const uint8_t *data, size_t size)
{
	if (fuzz_fd == -1) {
		log_set_quiet(true);
		strcpy(fuzz_dir, "/tmp/colofs-fuzz.XXXXXX");
		if (mkdtemp(fuzz_dir) == NULL)
			abort();
		snprintf(fuzz_path, sizeof fuzz_path, "%s/%s", fuzz_dir, name);
		fuzz_fd = open(fuzz_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fuzz_fd == -1)
			abort();
		atexit(fuzz_file_cleanup);
	}
	if (ftruncate(fuzz_fd, 0) == -1 ||
	    (size && pwrite(fuzz_fd, data, size, 0) != (ssize_t) size))
		abort();
	return fuzz_path;
}

#endif
