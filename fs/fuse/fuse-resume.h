/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FUSE_RESUME_H
#define COLOFS_FUSE_RESUME_H

/* Resumes the FUSE session se on fd, a copy of the holder's /dev/fuse
 * file: custom I/O hooks that save the INIT exchange in the state memfd,
 * the saved INIT replayed (its reply checked, not sent), and
 * FUSE_NOTIFY_RESEND so that the requests a dead worker had read come
 * again.  On the first start it only installs the hooks.  0, or -1 after
 * logging why (fd is then closed).  fuse-resume.c.
 */
struct fuse_session;
int fuse_resume(struct fuse_session *se, int fd);

#endif
