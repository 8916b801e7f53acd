/* SPDX-License-Identifier: MIT */
/* fs/holder.c: the sd_notify message that puts an fd in systemd's fd
 * store, and its sending over a real datagram socket with SCM_RIGHTS (a
 * socket of ours stands in for systemd's $NOTIFY_SOCKET).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "holder.h"
#include "log.h"

TestSuite(holder);

Test(holder, fdstore_message_names_the_fd)
{
	char buf[300];
	int n = sd_fdstore_msg(buf, sizeof buf, "fuse");

	cr_assert_eq(n, (int) strlen("FDSTORE=1\nFDNAME=fuse\n"));
	cr_assert_str_eq(buf, "FDSTORE=1\nFDNAME=fuse\n");
}

Test(holder, fdstore_message_refuses_names_systemd_refuses)
{
	char buf[300], longname[300];

	errno = 0;
	cr_assert_eq(sd_fdstore_msg(buf, sizeof buf, ""), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(sd_fdstore_msg(buf, sizeof buf, "a:b"), -1);
	cr_assert_eq(sd_fdstore_msg(buf, sizeof buf, "a b"), -1);
	cr_assert_eq(sd_fdstore_msg(buf, sizeof buf, "a\nFDSTOREREMOVE=1"), -1);
	memset(longname, 'x', 256);
	longname[256] = '\0';
	cr_assert_eq(sd_fdstore_msg(buf, sizeof buf, longname), -1);
	cr_assert_eq(errno, EINVAL);
	longname[255] = '\0';
	cr_assert_gt(sd_fdstore_msg(buf, sizeof buf, longname), 0);
}

Test(holder, fdstore_message_that_does_not_fit_is_refused)
{
	char buf[16];

	errno = 0;
	cr_assert_eq(sd_fdstore_msg(buf, sizeof buf, "fuse"), -1);
	cr_assert_eq(errno, ENOSPC);
}

Test(holder, fdstore_without_notify_socket_does_nothing)
{
	unsetenv("NOTIFY_SOCKET");
	cr_assert_eq(sd_fdstore(0, "fuse"), 1);
}

/* Receives one datagram with one fd; returns the fd, the text in buf. */
static int
recv_one(int s, char *buf, size_t size)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = size - 1 };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.b,
		.msg_controllen = sizeof u.b,
	};
	struct cmsghdr *cm;
	ssize_t n;
	int fd = -1;

	n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert_eq(mh.msg_flags & MSG_CTRUNC, 0);
	cm = CMSG_FIRSTHDR(&mh);
	cr_assert_not_null(cm);
	cr_assert_eq(cm->cmsg_type, SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	return fd;
}

static void
sends_to(const char *env, const struct sockaddr_un *sa, socklen_t salen)
{
	char buf[300], tmpl[] = "/tmp/colofs-holder-test.XXXXXX";
	struct stat a, b;
	int s, fd, got;

	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s, 0);
	cr_assert_eq(bind(s, (const struct sockaddr *) sa, salen), 0,
		     "bind: %s", strerror(errno));
	fd = mkstemp(tmpl);
	cr_assert_geq(fd, 0);
	unlink(tmpl);
	setenv("NOTIFY_SOCKET", env, 1);
	cr_assert_eq(sd_fdstore(fd, "state"), 0, "sd_fdstore: %s",
		     strerror(errno));
	unsetenv("NOTIFY_SOCKET");
	got = recv_one(s, buf, sizeof buf);
	cr_assert_str_eq(buf, "FDSTORE=1\nFDNAME=state\n");
	/* The same open file, not only the same number. */
	cr_assert_eq(fstat(fd, &a), 0);
	cr_assert_eq(fstat(got, &b), 0);
	cr_assert_eq(a.st_ino, b.st_ino);
	cr_assert_eq(a.st_dev, b.st_dev);
	close(got);
	close(fd);
	close(s);
}

Test(holder, fdstore_sends_the_fd_to_a_path_socket)
{
	char dir[] = "/tmp/colofs-notify.XXXXXX";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	cr_assert_not_null(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", dir);
	sends_to(sa.sun_path, &sa, sizeof sa);
	unlink(sa.sun_path);
	rmdir(dir);
}

Test(holder, fdstore_sends_the_fd_to_an_abstract_socket)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char env[64];
	size_t n;

	n = (size_t) snprintf(env, sizeof env, "@colofs-notify-%ld",
			      (long) getpid());
	memcpy(sa.sun_path + 1, env + 1, n - 1);
	sends_to(env, &sa,
		 (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n));
}

Test(holder, fdstore_to_a_relative_path_is_refused)
{
	setenv("NOTIFY_SOCKET", "relative/notify", 1);
	errno = 0;
	cr_assert_eq(sd_fdstore(0, "fuse"), -1);
	cr_assert_eq(errno, EINVAL);
	unsetenv("NOTIFY_SOCKET");
}
