/* SPDX-License-Identifier: MIT */
/* Placeholder until the libqcow backend lands. */
#include <errno.h>

#include "image.h"
#include "log.h"

struct image *
image_qcow2_open(const char *path, const char *overlay_dir, const char *name)
{
	(void) overlay_dir;
	(void) name;
	errno = ENOTSUP;
	log_error("image %s: qcow2 is not supported yet", path);
	return NULL;
}
