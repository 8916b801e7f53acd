/* SPDX-License-Identifier: MIT */
/* core/fdio.c's safe creation: a planted symlink or file never steers a
 * write, a symlinked directory is refused, leftovers are swept.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "support.h"

static char *dir;

static void
setup(void)
{
	log_set_quiet(true);
	dir = test_temp_dir();
}

static void
teardown(void)
{
	test_cleanup_dir(dir);
}

TestSuite(fdio, .init = setup, .fini = teardown);

static void
put(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
expect(const char *path, const char *text)
{
	char buf[256] = "";
	FILE *fp = fopen(path, "r");

	cr_assert_not_null(fp, "%s", path);
	cr_assert_neq(fgets(buf, sizeof buf, fp), NULL);
	fclose(fp);
	cr_assert_str_eq(buf, text);
}

Test(fdio, a_symlink_at_the_name_is_replaced_not_followed)
{
	char victim[512], link[512];
	struct stat st;

	snprintf(victim, sizeof victim, "%s/victim", dir);
	snprintf(link, sizeof link, "%s/a.state", dir);
	put(victim, "precious\n");
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_eq(durable_write(dir, "a.state", "new\n", 4), 0);
	expect(victim, "precious\n");
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	expect(link, "new\n");
}

Test(fdio, a_planted_old_style_tmp_symlink_is_ignored)
{
	char victim[512], link[512], dst[512];

	snprintf(victim, sizeof victim, "%s/victim", dir);
	snprintf(link, sizeof link, "%s/a.state.tmp", dir);
	snprintf(dst, sizeof dst, "%s/a.state", dir);
	put(victim, "precious\n");
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_eq(durable_write(dir, "a.state", "new\n", 4), 0);
	expect(victim, "precious\n");
	expect(dst, "new\n");
}

Test(fdio, a_symlinked_directory_is_refused)
{
	char real[512], link[512], dst[600];

	snprintf(real, sizeof real, "%s/real", dir);
	snprintf(link, sizeof link, "%s/link", dir);
	cr_assert_eq(mkdir(real, 0700), 0);
	cr_assert_eq(symlink(real, link), 0);
	cr_assert_eq(fdio_dir_open(link), -1);
	cr_assert(errno == ELOOP || errno == ENOTDIR);
	cr_assert_eq(durable_write(link, "a.state", "x\n", 2), -1);
	snprintf(dst, sizeof dst, "%s/a.state", real);
	cr_assert_eq(access(dst, F_OK), -1);
}

Test(fdio, create_tmp_is_exclusive_and_sweep_removes_only_files)
{
	char tmp[256], keep[512], linkp[512], victim[512];
	int dfd = fdio_dir_open(dir), fd;

	cr_assert_geq(dfd, 0);
	fd = fdio_create_tmp(dfd, "b.dirty", 0, 0600, tmp, sizeof tmp);
	cr_assert_geq(fd, 0);
	cr_assert_eq(strncmp(tmp, "b.dirty.tmp.", 12), 0, "%s", tmp);
	close(fd);
	snprintf(victim, sizeof victim, "%s/victim", dir);
	put(victim, "precious\n");
	snprintf(linkp, sizeof linkp, "%s/b.dirty.tmp.zzzzzz", dir);
	cr_assert_eq(symlink(victim, linkp), 0);
	snprintf(keep, sizeof keep, "%s/c.dirty.tmp.aaaaaa", dir);
	put(keep, "other\n");
	cr_assert_eq(fdio_sweep_tmp(dfd, "b.dirty"), 0);
	cr_assert_eq(faccessat(dfd, tmp, F_OK, 0), -1);
	cr_assert_eq(access(linkp, F_OK), 0, "a symlink is left alone");
	expect(victim, "precious\n");
	expect(keep, "other\n");
	close(dfd);
}

Test(fdio, open_file_at_refuses_links_and_directories)
{
	char victim[512], link[512], sub[512];
	int dfd = fdio_dir_open(dir);

	snprintf(victim, sizeof victim, "%s/victim", dir);
	snprintf(link, sizeof link, "%s/l", dir);
	snprintf(sub, sizeof sub, "%s/sub", dir);
	put(victim, "x\n");
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_eq(mkdir(sub, 0700), 0);
	cr_assert_eq(fdio_open_file_at(dfd, "l", O_RDONLY), -1);
	cr_assert_eq(errno, ELOOP);
	cr_assert_eq(fdio_open_file_at(dfd, "sub", O_RDONLY), -1);
	cr_assert_eq(errno, EINVAL);
	int fd = fdio_open_file_at(dfd, "victim", O_RDONLY);
	cr_assert_geq(fd, 0);
	close(fd);
	close(dfd);
}

Test(fdio, open_or_create_makes_the_file_once_and_never_follows_a_link)
{
	char path[4096], target[4096];
	struct stat a, b;
	int dfd, fd1, fd2;

	dfd = fdio_dir_open(dir);
	cr_assert_neq(dfd, -1);
	fd1 = fdio_open_or_create_at(dfd, "x.lock", O_RDWR, 0600);
	cr_assert_neq(fd1, -1, "%s", strerror(errno));
	fd2 = fdio_open_or_create_at(dfd, "x.lock", O_WRONLY | O_APPEND, 0600);
	cr_assert_neq(fd2, -1);
	cr_assert_eq(fstat(fd1, &a), 0);
	cr_assert_eq(fstat(fd2, &b), 0);
	cr_assert_eq(a.st_ino, b.st_ino, "a second open made another file");
	cr_assert_eq(a.st_mode & 0777, 0600);
	snprintf(target, sizeof target, "%s/elsewhere", dir);
	snprintf(path, sizeof path, "%s/y.log", dir);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert_eq(fdio_open_or_create_at(dfd, "y.log", O_WRONLY, 0600), -1);
	cr_assert_eq(access(target, F_OK), -1, "the link was followed");
	close(fd1);
	close(fd2);
	close(dfd);
}

Test(fdio, parent_open_splits_a_path)
{
	char path[512];
	const char *name;
	int dfd;

	snprintf(path, sizeof path, "%s/x.state", dir);
	dfd = fdio_parent_open(path, &name);
	cr_assert_geq(dfd, 0);
	cr_assert_str_eq(name, "x.state");
	close(dfd);
	dfd = fdio_parent_open("bare", &name);
	cr_assert_geq(dfd, 0, "a bare name is in \".\"");
	cr_assert_str_eq(name, "bare");
	close(dfd);
}

Test(fdio, open_own_trusts_only_a_private_file_of_ours)
{
	char path[512], sym[512], hard[512], why[256];
	int fd;

	snprintf(path, sizeof path, "%s/own", dir);
	snprintf(sym, sizeof sym, "%s/link", dir);
	snprintf(hard, sizeof hard, "%s/hard", dir);
	put(path, "x\n");
	cr_assert_eq(chmod(path, 0600), 0);
	fd = fdio_open_own(path, O_RDONLY, why, sizeof why);
	cr_assert_geq(fd, 0, "%s", why);
	close(fd);
	cr_assert_eq(symlink(path, sym), 0);
	cr_assert_eq(fdio_open_own(sym, O_RDONLY, why, sizeof why), -1);
	cr_assert_eq(errno, ELOOP);
	cr_assert_eq(chmod(path, 0620), 0);
	cr_assert_eq(fdio_open_own(path, O_RDONLY, why, sizeof why), -1);
	cr_assert_eq(errno, EPERM);
	cr_assert(strstr(why, "writable by group or others") != NULL, "%s",
		  why);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(link(path, hard), 0);
	cr_assert_eq(fdio_open_own(path, O_RDONLY, why, sizeof why), -1,
		     "a file with another hard link was trusted");
	cr_assert_eq(unlink(hard), 0);
	if (geteuid() == 0) {
		cr_assert_eq(chown(path, 65534, 65534), 0);
		cr_assert_eq(fdio_open_own(path, O_RDONLY, why, sizeof why),
			     -1);
		cr_assert(strstr(why, "owned by another user") != NULL, "%s",
			  why);
	}
}

/* full_pwrite_lent writes exactly what full_pwrite would: any alignment of
 * the buffer, lengths beyond the pipe, at an offset; and into a file that
 * splice cannot write (O_APPEND: EINVAL) by writing it instead.
 */
static void
lent_round_trip(int flags, size_t len, size_t shift, uint64_t off)
{
	char path[512];
	char *src = malloc(len + shift), *got = malloc(len);
	int fd;
	size_t i;

	cr_assert(src != NULL && got != NULL);
	for (i = 0; i < len; i++)
		src[shift + i] = (char) (i * 7 + i / 4096);
	snprintf(path, sizeof path, "%s/lent", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | flags, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(full_pwrite_lent(fd, src + shift, len, off), 0,
		     "len %zu shift %zu: %s", len, shift, strerror(errno));
	/* Changing the source afterwards changes nothing written. */
	memset(src, 0, len + shift);
	cr_assert_eq(full_pread(fd, got, len, (flags & O_APPEND) ? 0 : off),
		     0);
	for (i = 0; i < len; i++)
		if (got[i] != (char) (i * 7 + i / 4096))
			cr_assert_fail("len %zu shift %zu: byte %zu differs",
				       len, shift, i);
	close(fd);
	free(src);
	free(got);
}

Test(fdio, pwrite_lent_writes_the_bytes_whatever_the_alignment)
{
	lent_round_trip(0, 1, 0, 0);
	lent_round_trip(0, 4096, 0, 4096);
	lent_round_trip(0, 3 * 1024 * 1024 + 17, 5, 12345);
	lent_round_trip(0, 4 * 1024 * 1024, 4095, 1 << 20);
	lent_round_trip(O_APPEND, 256 * 1024 + 3, 1, 0);
}
