/* SPDX-License-Identifier: MIT */
/* Whole transfers on file descriptors, shared by the fd-backed stores and
 * the images: short reads and writes and EINTR are retried, so a caller
 * sees all of it or an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include "fdio.h"

int
full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, off);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EIO;	/* beyond the end: a short file */
			return -1;
		}
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

int
full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t r = pwrite(fd, p, len, off);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

int
fd_zero_range(int fd, uint64_t off, uint64_t len)
{
	static const char zeros[65536];

	if (len == 0)
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -1;
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -1;
	while (len > 0) {
		size_t n = len < sizeof zeros ? len : sizeof zeros;

		if (full_pwrite(fd, zeros, n, off) == -1)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}
