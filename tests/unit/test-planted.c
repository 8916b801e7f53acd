/* SPDX-License-Identifier: MIT */
/* Every writer of colofs's own files against a planted symlink or a forged
 * file (issue 17): the dirty bitmap, the qcow2 overlay's map, log and
 * overlay, the metrics file, the file buffers, the state file.  A symlink at
 * the temporary name a writer used to pick (NAME.tmp) or at the final name
 * must never steer root's write, and a reader must not follow one nor trust
 * a file another user owns or can write.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitmap.h"
#include "fuse/colo.h"
#include "fdio.h"
#include "image.h"
#include "journal.h"
#include "log.h"
#include "statefile.h"
#include "store.h"
#include "support.h"

static char *dir;
static char victim[512];

#define PRECIOUS "precious\n"

static void
setup(void)
{
	FILE *fp;

	log_set_quiet(true);
	dir = test_temp_dir();
	snprintf(victim, sizeof victim, "%s/victim", dir);
	fp = fopen(victim, "w");
	cr_assert_not_null(fp);
	fputs(PRECIOUS, fp);
	fclose(fp);
}

static void
teardown(void)
{
	test_cleanup_dir(dir);
}

TestSuite(planted, .init = setup, .fini = teardown, .timeout = 60);

/* NAME in the test dir becomes a symlink to the victim. */
static void
plant(const char *name)
{
	char path[600];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	cr_assert_eq(symlink(victim, path), 0, "symlink %s: %s", path,
		     strerror(errno));
}

static void
victim_untouched(void)
{
	char buf[64] = "";
	struct stat st;
	FILE *fp = fopen(victim, "r");

	cr_assert_not_null(fp);
	cr_assert_eq(fstat(fileno(fp), &st), 0);
	cr_assert_neq(fgets(buf, sizeof buf, fp), NULL);
	fclose(fp);
	cr_assert_str_eq(buf, PRECIOUS,
			 "the victim was written through a "
			 "planted link");
	cr_assert_eq(st.st_size, (off_t) strlen(PRECIOUS),
		     "the victim grew to %lld bytes", (long long) st.st_size);
}

static void
path_of(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

Test(planted, bitmap_ignores_a_link_at_its_old_temporary_name)
{
	char path[600];
	struct bitmap *b;

	plant("vda.dirty.tmp");
	path_of(path, sizeof path, "vda.dirty");
	b = bitmap_open(path, 1 << 20, 65536);
	cr_assert_not_null(b, "bitmap_open: %s", strerror(errno));
	cr_assert_eq(bitmap_mark(b, 0, 4096), 0);
	cr_assert_eq(bitmap_save(b), 0);
	bitmap_free(b);
	victim_untouched();
}

Test(planted, bitmap_refuses_a_link_at_its_name)
{
	char path[600];

	plant("vda.dirty");
	path_of(path, sizeof path, "vda.dirty");
	cr_assert_null(bitmap_open(path, 1 << 20, 65536));
	victim_untouched();
}

Test(planted, bitmap_refuses_a_file_others_can_write)
{
	char path[600];
	struct bitmap *b;

	path_of(path, sizeof path, "vda.dirty");
	b = bitmap_open(path, 1 << 20, 65536);
	cr_assert_not_null(b);
	bitmap_free(b);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_null(bitmap_open(path, 1 << 20, 65536),
		       "a world-writable bitmap was trusted");
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(chown(path, 65534, 65534), 0);
	cr_assert_null(bitmap_open(path, 1 << 20, 65536),
		       "a bitmap owned by nobody was trusted");
}

static int
has_qemu(void)
{
	return system("command -v qemu-img >/dev/null") == 0;
}

static struct image *
qcow2_image(void)
{
	char cmd[1024], qpath[600];

	path_of(qpath, sizeof qpath, "disk.qcow2");
	snprintf(cmd, sizeof cmd, "qemu-img create -q -f qcow2 %s 1M", qpath);
	cr_assert_eq(system(cmd), 0);
	return image_qcow2_open(qpath, dir, "vda");
}

Test(planted, qcow2_overlay_map_and_log_ignore_planted_links)
{
	char buf[4096];
	struct image *img;

	if (!has_qemu())
		cr_skip_test("qemu-img is needed");
	plant("vda.overlay.map.tmp");
	plant("vda.overlay.log");
	img = qcow2_image();
	/* Refusing the planted log is as good as not following it. */
	if (img != NULL) {
		memset(buf, 0x5a, sizeof buf);
		cr_assert_eq(img->ops->pwrite(img, buf, sizeof buf, 0), 0);
		cr_assert_eq(img->ops->flush(img), 0);
		img->ops->close(img);
	}
	victim_untouched();
}

Test(planted, qcow2_refuses_a_link_at_the_overlay)
{
	char buf[4096];
	struct image *img;

	if (!has_qemu())
		cr_skip_test("qemu-img is needed");
	plant("vda.overlay");
	img = qcow2_image();
	if (img != NULL) {
		memset(buf, 0x5a, sizeof buf);
		img->ops->pwrite(img, buf, sizeof buf, 0);
		img->ops->flush(img);
		img->ops->close(img);
	}
	cr_assert_null(img, "an overlay that is a symlink was opened");
	victim_untouched();
}

Test(planted, metrics_file_ignores_a_link_at_its_old_temporary_name)
{
	static const struct config cfg = {
		.mode = CONFIG_MODE_SECONDARY,
		.buffer = CONFIG_BUFFER_MEMORY,
	};
	struct secondary *r = test_secondary(1 << 20, 0x11, NULL);
	char path[600];
	struct stat st;

	plant("colofs.prom.tmp");
	path_of(path, sizeof path, "colofs.prom");
	cr_assert_eq(colo_secondary_metrics_write(r, &cfg, NULL, 0, path), 0);
	secondary_free(r);
	victim_untouched();
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0644, "metrics mode %o",
		     st.st_mode & 07777);
}

Test(planted, file_buffer_refuses_a_link)
{
	char path[600];

	plant("vm.vda.hidden");
	path_of(path, sizeof path, "vm.vda.hidden");
	cr_assert_null(store_file_open(path, 1 << 20));
}

/* A valid state file saying done, reachable only through a link. */
static void
forge_state(const char *path)
{
	FILE *fp = fopen(path, "w");

	cr_assert_not_null(fp);
	fputs("colofs-state 1\nstate=done\n"
	      "generation=0123456789abcdef0123456789abcdef\njournaled=0\n",
	      fp);
	fclose(fp);
}

Test(planted, state_file_reader_does_not_follow_a_link)
{
	struct statefile sf;
	char path[600], err[512];

	forge_state(victim);
	plant("m.state");
	path_of(path, sizeof path, "m.state");
	cr_assert_eq(statefile_read(path, &sf, err, sizeof err), -1,
		     "a state file reached through a symlink was read");
}

Test(planted, state_file_reader_refuses_a_file_others_own_or_write)
{
	struct statefile sf;
	char path[600], err[512];

	path_of(path, sizeof path, "m.state");
	forge_state(path);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(statefile_read(path, &sf, err, sizeof err), 0, "%s", err);
	cr_assert_eq(chmod(path, 0622), 0);
	cr_assert_eq(statefile_read(path, &sf, err, sizeof err), -1,
		     "a group- and world-writable state file was obeyed");
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(chown(path, 65534, 65534), 0);
	cr_assert_eq(statefile_read(path, &sf, err, sizeof err), -1,
		     "a state file owned by nobody was obeyed");
	cr_assert(strstr(err, "owned") != NULL, "%s", err);
}

/* The failover journal (issue 17, item 1; journal v2 is made by fdio): a
 * link at the temporary name the text journal used (NAME.journal.tmp) or
 * at the final name never steers the write, and a link at the name is not
 * read back as a journal.
 */
Test(planted, journal_ignores_links_at_its_old_temporary_and_final_names)
{
	struct journal_rec rec = { .op = 'A', .off = 0, .len = 4096 };
	struct journal_info info;
	struct journal *j;
	char err[256];
	struct stat st;
	int dfd;

	plant("m.vda.journal.tmp");
	plant("m.vda.journal");
	dfd = fdio_dir_open(dir);
	cr_assert_geq(dfd, 0);
	j = journal_create(dfd, "m.vda.journal", "vda", 1 << 20, 7, &rec, 1);
	cr_assert_not_null(j, "journal_create: %s", strerror(errno));
	cr_assert_eq(journal_append(j, 'D', 0, 4096), 0);
	cr_assert_eq(journal_commit(j), 0);
	journal_close(j);
	victim_untouched();
	/* The link at the final name was replaced, not written through. */
	cr_assert_eq(fstatat(dfd, "m.vda.journal", &st, AT_SYMLINK_NOFOLLOW), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(journal_load(dfd, "m.vda.journal", "vda", 1 << 20, &info,
				  NULL, err, sizeof err), 0, "%s", err);
	cr_assert_eq(info.generation, 7);
	journal_info_release(&info);
	close(dfd);
}

Test(planted, journal_reader_does_not_follow_a_link)
{
	struct journal_info info;
	char err[256] = "";
	int dfd;

	plant("m.vda.journal");
	dfd = fdio_dir_open(dir);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(journal_load(dfd, "m.vda.journal", "vda", 1 << 20, &info,
				  NULL, err, sizeof err), -1);
	close(dfd);
	victim_untouched();
}
