/* SPDX-License-Identifier: MIT */
/* fs/config*.c: every key, every default, every error with its line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"

#define COLOFS "[colofs]\nmountpoint = /mnt/vm1\n"
#define DISK "[disk \"vda\"]\nimage = /img/vda.raw\n"

static char err[512];

static struct config *
load(const char *text)
{
	err[0] = '\0';
	return config_load_string(text, "t.ini", err, sizeof err);
}

static struct config *
load_ok(const char *text)
{
	struct config *c = load(text);

	cr_assert_not_null(c, "expected success, got: %s", err);
	return c;
}

/* Loading fails with EINVAL and err starts with where and contains why. */
static void
expect_error(const char *text, const char *where, const char *why)
{
	struct config *c = load(text);

	cr_assert_null(c, "expected an error \"%s\" for:\n%s", why, text);
	cr_assert_eq(errno, EINVAL, "errno %d, want EINVAL", errno);
	cr_assert_eq(strncmp(err, where, strlen(where)), 0,
		     "error \"%s\" does not start with \"%s\"", err, where);
	cr_assert_not_null(strstr(err, why),
			   "error \"%s\" does not contain \"%s\"", err, why);
}

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
assert_same_config(const struct config *a, const struct config *b)
{
	size_t i;

	cr_assert(str_eq(a->mountpoint, b->mountpoint));
	cr_assert_eq(a->mode, b->mode);
	cr_assert(str_eq(a->listen, b->listen));
	cr_assert_eq(a->buffer, b->buffer);
	cr_assert(str_eq(a->buffer_dir, b->buffer_dir));
	cr_assert_eq(a->buffer_limit, b->buffer_limit);
	cr_assert_eq(a->buffer_warm, b->buffer_warm);
	cr_assert_eq(a->allow_other, b->allow_other);
	cr_assert_eq(a->page_cache, b->page_cache);
	cr_assert_eq(a->write_behind, b->write_behind);
	cr_assert_eq(a->allow_chown, b->allow_chown);
	cr_assert(str_eq(a->metrics_file, b->metrics_file));
	cr_assert_eq(a->max_connections, b->max_connections);
	cr_assert_eq(a->max_handshakes, b->max_handshakes);
	cr_assert_eq(a->max_handshakes_per_address,
		     b->max_handshakes_per_address);
	cr_assert_eq(a->io_timeout, b->io_timeout);
	cr_assert_eq(a->nbd_memory_limit, b->nbd_memory_limit);
	cr_assert_eq(a->nbd_conn_memory_limit, b->nbd_conn_memory_limit);
	cr_assert_eq(a->ndisks, b->ndisks);
	for (i = 0; i < a->ndisks; i++) {
		const struct config_disk *x = &a->disks[i], *y = &b->disks[i];

		cr_assert(str_eq(x->name, y->name));
		cr_assert(str_eq(x->image, y->image));
		cr_assert_eq(x->format, y->format);
		cr_assert(str_eq(x->export_name, y->export_name));
		cr_assert(str_eq(x->owner, y->owner));
		cr_assert(str_eq(x->group, y->group));
		cr_assert_eq(x->uid, y->uid);
		cr_assert_eq(x->gid, y->gid);
		cr_assert_eq(x->mode, y->mode);
	}
}

/* Dumps c, parses the dump back and checks it is the same config. */
static void
assert_round_trip(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	struct config *back;

	cr_assert_not_null(fp);
	config_dump(c, fp);
	cr_assert_eq(fclose(fp), 0);
	back = config_load_string(text, "dump", err, sizeof err);
	cr_assert_not_null(back, "dump does not parse back: %s\n%s", err, text);
	assert_same_config(c, back);
	config_free(back);
	free(text);
}

static const char sample[] =
	"; a deployment\n"
	"[colofs]\n"
	"mountpoint = /var/lib/colofs/vm1   ; required\n"
	"mode = secondary\n"
	"listen = unix:/run/colofs/vm1.sock\n"
	"buffer = file\n"
	"buffer_dir = /var/lib/colofs/buf\n"
	"buffer_limit = 2G\n"
	"allow_other = yes\n"
	"page_cache = true\n"
	"allow_chown = false\n"
	"metrics_file = /var/lib/node_exporter/colofs-vm1.prom\n"
	"\n"
	"[disk \"vda\"]                       ; one per disk\n"
	"image = /var/lib/libvirt/images/vm1.raw\n"
	"format = raw\n"
	"export = vda-export\n"
	"owner = daemon\n"
	"group = bin\n"
	"mode = 0660\n"
	"\n"
	"[disk \"vdb\"]\n"
	"image = /var/lib/libvirt/images/vm1-data.qcow2\n"
	"format = qcow2\n";

Test(config, sample_file_loads_every_key)
{
	char path[] = "/tmp/colofs-config-XXXXXX";
	int fd = mkstemp(path);
	struct config *c;

	cr_assert_neq(fd, -1);
	cr_assert_eq(write(fd, sample, strlen(sample)), (ssize_t) strlen(sample));
	close(fd);
	c = config_load(path, err, sizeof err);
	unlink(path);
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->path, path);
	cr_assert_str_eq(c->mountpoint, "/var/lib/colofs/vm1");
	cr_assert_eq(c->mode, CONFIG_MODE_SECONDARY);
	cr_assert_str_eq(c->listen, "unix:/run/colofs/vm1.sock");
	cr_assert_eq(c->buffer, CONFIG_BUFFER_FILE);
	cr_assert_str_eq(c->buffer_dir, "/var/lib/colofs/buf");
	cr_assert_eq(c->buffer_limit, UINT64_C(2) << 30);
	cr_assert(c->allow_other);
	cr_assert(c->page_cache);
	cr_assert(!c->allow_chown);
	cr_assert_str_eq(c->metrics_file,
			 "/var/lib/node_exporter/colofs-vm1.prom");
	cr_assert_eq(c->ndisks, 2);
	cr_assert_str_eq(c->disks[0].name, "vda");
	cr_assert_str_eq(c->disks[0].image, "/var/lib/libvirt/images/vm1.raw");
	cr_assert_eq(c->disks[0].format, IMAGE_FORMAT_RAW);
	cr_assert_str_eq(c->disks[0].export_name, "vda-export");
	cr_assert_str_eq(c->disks[0].owner, "daemon");
	cr_assert_eq(c->disks[0].uid, 1);
	cr_assert_str_eq(c->disks[0].group, "bin");
	cr_assert_eq(c->disks[0].gid, 2);
	cr_assert_eq(c->disks[0].mode, 0660);
	cr_assert_eq(c->disks[0].line, 14);
	cr_assert_str_eq(c->disks[1].name, "vdb");
	cr_assert_eq(c->disks[1].format, IMAGE_FORMAT_QCOW2);
	cr_assert_str_eq(c->disks[1].export_name, "vdb");
	cr_assert_eq(c->disks[1].line, 22);
	config_free(c);
}

Test(config, write_behind_takes_a_size_and_zero_turns_it_off)
{
	struct config *c = load_ok(COLOFS "write_behind = 1M\n" DISK);

	cr_assert_eq(c->write_behind, UINT64_C(1) << 20);
	config_free(c);
	c = load_ok(COLOFS "write_behind = 0\n" DISK);
	cr_assert_eq(c->write_behind, 0);
	config_free(c);
}

Test(config, buffer_warm_is_for_memory_buffers_of_a_secondary)
{
	struct config *c = load_ok(COLOFS "buffer_warm = 256M\n" DISK);

	cr_assert_eq(c->buffer_warm, UINT64_C(256) << 20);
	config_free(c);
	c = load_ok(COLOFS DISK);
	cr_assert_eq(c->buffer_warm, 0, "buffer_warm defaults to 0");
	config_free(c);
	expect_error(COLOFS "buffer = file\nbuffer_dir = /b\nbuffer_warm = 1M\n"
		     DISK, "t.ini:5:",
		     "buffer_warm is for mode = secondary with buffer = memory");
	expect_error(COLOFS "mode = primary\nbuffer_warm = 1M\n"
		     "[disk \"vda\"]\nimage = /img/vda.raw\nsecondary = "
		     "nbd+unix:///vda?socket=/run/s.sock\n", "t.ini:4:",
		     "buffer_warm is for mode = secondary with buffer = memory");
}

Test(config, defaults)
{
	struct config *c = load_ok(COLOFS DISK);

	cr_assert_str_eq(c->path, "t.ini");
	cr_assert_str_eq(c->mountpoint, "/mnt/vm1");
	cr_assert_eq(c->mode, CONFIG_MODE_SECONDARY);
	cr_assert_null(c->listen);
	cr_assert_eq(c->buffer, CONFIG_BUFFER_MEMORY);
	cr_assert_null(c->buffer_dir);
	cr_assert_eq(c->buffer_limit, 0);
	cr_assert(c->allow_other, "allow_other defaults to true (libvirt)");
	cr_assert(!c->page_cache, "page_cache defaults to false");
	cr_assert_eq(c->write_behind, UINT64_C(8) << 20,
		     "write_behind defaults to 8M");
	cr_assert(c->allow_chown, "allow_chown defaults to true (libvirt)");
	cr_assert_null(c->metrics_file);
	cr_assert_eq(c->ndisks, 1);
	cr_assert_str_eq(c->disks[0].name, "vda");
	cr_assert_str_eq(c->disks[0].image, "/img/vda.raw");
	cr_assert_eq(c->disks[0].format, IMAGE_FORMAT_RAW);
	cr_assert_str_eq(c->disks[0].export_name, "vda");
	cr_assert_str_eq(c->disks[0].owner, "root");
	cr_assert_str_eq(c->disks[0].group, "root");
	cr_assert_eq(c->disks[0].uid, 0);
	cr_assert_eq(c->disks[0].gid, 0);
	cr_assert_eq(c->disks[0].mode, 0600);
	cr_assert_eq(c->disks[0].line, 3);
	config_free(c);
}

Test(config, missing_file_is_enoent)
{
	struct config *c = config_load("/nonexistent/colofs.ini", err,
				       sizeof err);

	cr_assert_null(c);
	cr_assert_eq(errno, ENOENT);
	cr_assert_str_eq(err, "/nonexistent/colofs.ini: cannot read: "
			 "No such file or directory");
}

Test(config, unknown_section)
{
	expect_error(COLOFS DISK "[network]\n", "t.ini:5:",
		     "unknown section [network]");
}

Test(config, disk_section_without_quotes_is_unknown)
{
	expect_error(COLOFS "[disk vda]\nimage = /x\n", "t.ini:3:",
		     "unknown section [disk vda]");
}

Test(config, unknown_key_in_colofs_is_named)
{
	expect_error("[colofs]\nmountpoint = /m\nmountpiont = /m\n" DISK,
		     "t.ini:3:", "unknown key 'mountpiont' in [colofs]");
}

Test(config, unknown_key_in_disk_is_named)
{
	expect_error(COLOFS DISK "size = 10G\n", "t.ini:5:",
		     "unknown key 'size' in [disk \"vda\"]");
}

Test(config, key_outside_any_section)
{
	expect_error("mountpoint = /m\n" COLOFS DISK, "t.ini:1:",
		     "key 'mountpoint' outside any section");
}

Test(config, line_without_equals_is_a_syntax_error)
{
	expect_error(COLOFS "allow_other\n" DISK, "t.ini:3:",
		     "expected [section] or 'key = value'");
}

Test(config, section_header_without_bracket)
{
	expect_error(COLOFS "[disk \"vda\"\nimage = /x\n", "t.ini:3:",
		     "section header without ']'");
}

Test(config, bad_buffer_value_names_key_value_and_choices)
{
	expect_error(COLOFS "buffer = disk\n" DISK, "t.ini:3:",
		     "bad value for buffer: 'disk' (expected memory or file)");
}

Test(config, bad_bool_value)
{
	expect_error(COLOFS "allow_other = maybe\n" DISK, "t.ini:3:",
		     "bad value for allow_other: 'maybe'");
}

Test(config, bool_spellings)
{
	static const char *const yes[] = { "true", "yes", "1", "on", "TRUE" };
	static const char *const no[] = { "false", "no", "0", "off", "No" };
	char text[256];
	struct config *c;
	size_t i;

	for (i = 0; i < 5; i++) {
		snprintf(text, sizeof text, COLOFS "allow_other = %s\n" DISK,
			 yes[i]);
		c = load_ok(text);
		cr_assert(c->allow_other, "%s must be true", yes[i]);
		config_free(c);
		snprintf(text, sizeof text, COLOFS "allow_other = %s\n" DISK,
			 no[i]);
		c = load_ok(text);
		cr_assert(!c->allow_other, "%s must be false", no[i]);
		config_free(c);
	}
}

Test(config, bad_format_value)
{
	expect_error(COLOFS DISK "format = vmdk\n", "t.ini:5:",
		     "bad value for format: 'vmdk' (expected raw, qcow2 or auto)");
}

Test(config, format_values)
{
	struct config *c = load_ok(COLOFS "buffer_dir = /b\n"
				   "[disk \"a\"]\nimage = /a\nformat = raw\n"
				   "[disk \"b\"]\nimage = /b\nformat = qcow2\n"
				   "[disk \"c\"]\nimage = /c\nformat = auto\n");

	cr_assert_eq(c->disks[0].format, IMAGE_FORMAT_RAW);
	cr_assert_eq(c->disks[1].format, IMAGE_FORMAT_QCOW2);
	cr_assert_eq(c->disks[2].format, IMAGE_FORMAT_AUTO);
	config_free(c);
}

Test(config, disk_mode_is_octal)
{
	struct config *c = load_ok(COLOFS DISK "mode = 0644\n");

	cr_assert_eq(c->disks[0].mode, 0644);
	config_free(c);
	c = load_ok(COLOFS DISK "mode = 660\n");
	cr_assert_eq(c->disks[0].mode, 0660);
	config_free(c);
}

Test(config, disk_mode_rejects_non_octal_and_special_bits)
{
	expect_error(COLOFS DISK "mode = 0800\n", "t.ini:5:",
		     "bad value for mode: '0800'");
	expect_error(COLOFS DISK "mode = 4755\n", "t.ini:5:",
		     "bad value for mode: '4755'");
	expect_error(COLOFS DISK "mode = rw\n", "t.ini:5:",
		     "bad value for mode: 'rw'");
}

Test(config, buffer_limit_suffixes)
{
	static const struct { const char *v; uint64_t n; } cases[] = {
		{ "0", 0 }, { "4096", 4096 }, { "4K", 4096 },
		{ "2m", UINT64_C(2) << 20 }, { "3G", UINT64_C(3) << 30 },
		{ "1T", UINT64_C(1) << 40 },
	};
	char text[256];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config *c;

		snprintf(text, sizeof text, COLOFS "buffer_limit = %s\n" DISK,
			 cases[i].v);
		c = load_ok(text);
		cr_assert_eq(c->buffer_limit, cases[i].n, "%s", cases[i].v);
		config_free(c);
	}
}

Test(config, buffer_limit_rejects_junk_and_overflow)
{
	expect_error(COLOFS "buffer_limit = 10X\n" DISK, "t.ini:3:",
		     "bad value for buffer_limit: '10X'");
	expect_error(COLOFS "buffer_limit = -1\n" DISK, "t.ini:3:",
		     "bad value for buffer_limit: '-1'");
	expect_error(COLOFS "buffer_limit = 99999999999T\n" DISK, "t.ini:3:",
		     "too large");
}

Test(config, mode_primary_needs_a_secondary_per_disk)
{
	expect_error(COLOFS "mode = primary\n" DISK, "t.ini:",
		     "mode = primary needs secondary = URI");
}

Test(config, mode_primary_reads_its_keys)
{
	struct config *c = load_ok(COLOFS "mode = primary\n"
				   "dirty_granularity = 1M\n"
				   "secondary_timeout = 250ms\n" DISK
				   "secondary = nbd+unix:///vda?socket=/run/s\n");

	cr_assert_eq(c->mode, CONFIG_MODE_PRIMARY);
	cr_assert_eq(c->dirty_granularity, 1u << 20);
	cr_assert_eq(c->secondary_timeout_ms, 250);
	cr_assert_str_eq(c->disks[0].secondary, "nbd+unix:///vda?socket=/run/s");
	cr_assert_str_eq(c->state_dir, "/var/lib/colofs");
	config_free(c);
}

Test(config, primary_keys_are_checked)
{
	expect_error(COLOFS "mode = primary\n" DISK "secondary = http://x/\n",
		     "t.ini:", "bad value for secondary");
	expect_error(COLOFS "mode = primary\n" DISK "secondary = nbd://h/vda\n"
		     "secondary_tls_psk_file = /etc/psk\n", "t.ini:",
		     "TLS credentials need an nbds://");
	expect_error(COLOFS "mode = primary\ndirty_granularity = 3000\n" DISK
		     "secondary = nbd://h/vda\n", "t.ini:",
		     "bad value for dirty_granularity");
	expect_error(COLOFS "mode = primary\nsecondary_timeout = 0\n" DISK
		     "secondary = nbd://h/vda\n", "t.ini:",
		     "bad value for secondary_timeout");
	expect_error(COLOFS DISK "secondary = nbd://h/vda\n", "t.ini:",
		     "are for mode = primary");
}

Test(config, mode_other_is_a_bad_value)
{
	expect_error(COLOFS "mode = tertiary\n" DISK, "t.ini:3:",
		     "bad value for mode: 'tertiary'");
}

Test(config, listen_accepts_the_three_forms)
{
	static const char *const ok[] = {
		"unix:/run/colofs/vm1.sock", "127.0.0.1:10809",
		"localhost:1", "[::1]:65535", "[fe80::1]:10809",
	};
	char text[256];
	size_t i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct config *c;

		/* tls = off: fe80::1 is not loopback (secure by default). */
		snprintf(text, sizeof text, COLOFS "listen = %s\ntls = off\n"
			 DISK, ok[i]);
		c = load_ok(text);
		cr_assert_str_eq(c->listen, ok[i]);
		config_free(c);
	}
}

Test(config, listen_without_port_is_an_error)
{
	expect_error(COLOFS "listen = localhost:\n" DISK, "t.ini:3:",
		     "bad value for listen: 'localhost:' (no port");
	expect_error(COLOFS "listen = localhost\n" DISK, "t.ini:3:",
		     "no port");
	expect_error(COLOFS "listen = [::1]\n" DISK, "t.ini:3:", "no port");
}

Test(config, listen_rejects_bad_ports_and_addresses)
{
	expect_error(COLOFS "listen = localhost:0\n" DISK, "t.ini:3:",
		     "the port must be 1 to 65535");
	expect_error(COLOFS "listen = localhost:65536\n" DISK, "t.ini:3:",
		     "the port must be 1 to 65535");
	expect_error(COLOFS "listen = localhost:http\n" DISK, "t.ini:3:",
		     "the port must be 1 to 65535");
	expect_error(COLOFS "listen = ::1:10809\n" DISK, "t.ini:3:",
		     "needs brackets");
	expect_error(COLOFS "listen = [nope]:10809\n" DISK, "t.ini:3:",
		     "not an IPv6 address");
	expect_error(COLOFS "listen = unix:run/x.sock\n" DISK, "t.ini:3:",
		     "must be absolute");
}

Test(config, relative_paths_are_rejected)
{
	expect_error("[colofs]\nmountpoint = mnt\n" DISK, "t.ini:2:",
		     "bad value for mountpoint: 'mnt' (an absolute path)");
	expect_error(COLOFS "[disk \"vda\"]\nimage = vda.raw\n", "t.ini:4:",
		     "bad value for image: 'vda.raw'");
}

Test(config, duplicate_key_in_a_section)
{
	expect_error(COLOFS DISK "format = raw\nimage = /other.raw\n",
		     "t.ini:6:",
		     "duplicate key 'image' in [disk \"vda\"] (first set on line 4)");
}

Test(config, duplicate_key_in_colofs)
{
	expect_error(COLOFS "mountpoint = /again\n" DISK, "t.ini:3:",
		     "duplicate key 'mountpoint' in [colofs]");
}

Test(config, duplicate_disk_name)
{
	expect_error(COLOFS DISK "\n[disk \"vda\"]\nimage = /img/b.raw\n",
		     "t.ini:6:",
		     "duplicate disk [disk \"vda\"] (first on line 3)");
}

Test(config, duplicate_empty_disk_section_is_caught)
{
	/* No keys at all under the second header: inih alone never sees it. */
	expect_error(COLOFS DISK "[disk \"vda\"]\n", "t.ini:5:",
		     "duplicate disk");
}

Test(config, duplicate_colofs_section)
{
	expect_error(COLOFS DISK "[colofs]\n", "t.ini:5:",
		     "duplicate section [colofs] (first on line 1)");
}

Test(config, duplicate_export_names)
{
	expect_error(COLOFS DISK "export = shared\n"
		     "[disk \"vdb\"]\nimage = /img/b\nexport = shared\n",
		     "t.ini:8:",
		     "export name 'shared' is already used by [disk \"vda\"]");
}

Test(config, export_clashing_with_a_default_export)
{
	/* vdb's default export "vdb" is taken by vda: blame vdb's header. */
	expect_error(COLOFS DISK "export = vdb\n"
		     "[disk \"vdb\"]\nimage = /img/b\n",
		     "t.ini:6:", "export name 'vdb' is already used");
}

Test(config, bad_disk_names)
{
	expect_error(COLOFS "[disk \"a/b\"]\nimage = /x\n", "t.ini:3:",
		     "bad disk name \"a/b\"");
	expect_error(COLOFS "[disk \".hidden\"]\nimage = /x\n", "t.ini:3:",
		     "bad disk name");
	expect_error(COLOFS "[disk \"\"]\nimage = /x\n", "t.ini:3:",
		     "bad disk name");
	expect_error(COLOFS "[disk \"a b\"]\nimage = /x\n", "t.ini:3:",
		     "bad disk name");
}

Test(config, disk_name_length_limit)
{
	char name[66], text[256];
	struct config *c;

	memset(name, 'd', 64);
	name[64] = '\0';
	snprintf(text, sizeof text, COLOFS "[disk \"%s\"]\nimage = /x\n", name);
	c = load_ok(text);
	cr_assert_str_eq(c->disks[0].name, name);
	config_free(c);
	strcat(name, "d");
	snprintf(text, sizeof text, COLOFS "[disk \"%s\"]\nimage = /x\n", name);
	expect_error(text, "t.ini:3:", "bad disk name");
}

Test(config, missing_mountpoint)
{
	expect_error("[colofs]\nbuffer = memory\n" DISK, "t.ini: ",
		     "t.ini: [colofs] mountpoint is required");
}

Test(config, missing_image)
{
	expect_error(COLOFS "[disk \"vda\"]\nformat = raw\n", "t.ini:3:",
		     "[disk \"vda\"] image is required");
}

Test(config, empty_disk_section_needs_an_image)
{
	expect_error(COLOFS "[disk \"vda\"]\n", "t.ini:3:", "image is required");
}

Test(config, no_disks)
{
	expect_error(COLOFS, "t.ini: ", "no [disk \"NAME\"] section");
}

Test(config, no_colofs_section)
{
	expect_error(DISK, "t.ini: ", "no [colofs] section");
}

Test(config, empty_file)
{
	expect_error("", "t.ini: ", "no [colofs] section");
}

Test(config, buffer_file_needs_buffer_dir)
{
	expect_error(COLOFS "buffer = file\n" DISK, "t.ini:3:",
		     "buffer = file needs buffer_dir");
}

Test(config, buffer_file_with_buffer_dir)
{
	struct config *c = load_ok(COLOFS "buffer = file\nbuffer_dir = /b\n"
				   DISK);

	cr_assert_eq(c->buffer, CONFIG_BUFFER_FILE);
	cr_assert_str_eq(c->buffer_dir, "/b");
	config_free(c);
}

Test(config, metrics_file_inside_mountpoint)
{
	expect_error(COLOFS "metrics_file = /mnt/vm1/m.prom\n" DISK,
		     "t.ini:3:", "metrics_file /mnt/vm1/m.prom is inside "
		     "mountpoint /mnt/vm1");
	expect_error(COLOFS "metrics_file = m.prom\n" DISK, "t.ini:3:",
		     "metrics_file");
}

Test(config, buffer_dir_inside_mountpoint)
{
	expect_error(COLOFS "buffer_dir = /mnt/vm1/buf\n" DISK, "t.ini:3:",
		     "buffer_dir /mnt/vm1/buf is inside mountpoint /mnt/vm1");
	expect_error(COLOFS "buffer_dir = /mnt/vm1/\n" DISK, "t.ini:3:",
		     "is inside mountpoint");
}

Test(config, buffer_dir_beside_mountpoint_is_fine)
{
	struct config *c = load_ok(COLOFS "buffer_dir = /mnt/vm1-buf\n" DISK);

	cr_assert_str_eq(c->buffer_dir, "/mnt/vm1-buf");
	config_free(c);
}

Test(config, image_inside_mountpoint)
{
	expect_error(COLOFS "[disk \"vda\"]\nformat = raw\nimage = /mnt/vm1/vda\n",
		     "t.ini:5:", "image /mnt/vm1/vda is inside mountpoint");
}

Test(config, image_that_is_the_mountpoint_is_left_to_the_daemon)
{
	/* The daemon reports "not a directory" for this one. */
	struct config *c = load_ok(COLOFS "[disk \"vda\"]\nimage = /mnt/vm1\n");

	config_free(c);
}

Test(config, two_disks_on_one_image)
{
	expect_error(COLOFS DISK "[disk \"vdb\"]\nimage = /img/vda.raw/\n",
		     "t.ini:6:",
		     "[disk \"vdb\"] image /img/vda.raw/ is already used by [disk \"vda\"] (line 3)");
}

Test(config, qcow2_disk_needs_buffer_dir)
{
	expect_error(COLOFS DISK "format = qcow2\n", "t.ini:5:",
		     "format = qcow2 needs buffer_dir");
}

Test(config, line_too_long)
{
	char text[512], value[256];

	memset(value, 'x', 200);
	value[200] = '\0';
	snprintf(text, sizeof text, COLOFS DISK "export = %s\n", value);
	expect_error(text, "t.ini:5:", "line too long (209 characters, at most 197)");
}

Test(config, longest_line_is_accepted)
{
	char text[512], value[256];
	struct config *c;

	/* "export = " is 9 characters: 9 + 188 = 197. */
	memset(value, 'x', 188);
	value[188] = '\0';
	snprintf(text, sizeof text, COLOFS DISK "export = %s\r\n", value);
	c = load_ok(text);
	cr_assert_str_eq(c->disks[0].export_name, value);
	assert_round_trip(c);
	config_free(c);
}

Test(config, owner_and_group_by_name_and_id)
{
	struct config *c = load_ok(COLOFS DISK "owner = daemon\ngroup = 1234\n");

	cr_assert_eq(c->disks[0].uid, 1);
	cr_assert_str_eq(c->disks[0].owner, "daemon");
	cr_assert_eq(c->disks[0].gid, 1234);
	cr_assert_str_eq(c->disks[0].group, "1234");
	config_free(c);
}

Test(config, unknown_user)
{
	expect_error(COLOFS DISK "mode = 0600\nowner = no-such-user-xyz\n",
		     "t.ini:6:", "unknown user 'no-such-user-xyz' for owner");
}

Test(config, unknown_group)
{
	expect_error(COLOFS DISK "group = no-such-group-xyz\n", "t.ini:5:",
		     "unknown group 'no-such-group-xyz' for group");
}

Test(config, a_value_starting_with_a_semicolon_is_refused)
{
	/* "export =;x" would be ";x", its dump "export = ;x" a comment. */
	expect_error(COLOFS DISK "export =;x\n", "t.ini:",
		     "value of 'export' starts with ';'");
}

Test(config, inline_comments_and_indentation)
{
	struct config *c = load_ok(
		"# a comment\n"
		"[colofs]   ; the daemon\n"
		"  mountpoint = /mnt/vm1   ; where\n"
		"  allow_other = on\n"
		"[disk \"vda\"]\n"
		"\timage = /img/vda.raw ; the image\n"
		"\texport: vda-nbd\n");

	cr_assert_str_eq(c->mountpoint, "/mnt/vm1");
	cr_assert(c->allow_other);
	cr_assert_str_eq(c->disks[0].image, "/img/vda.raw");
	cr_assert_str_eq(c->disks[0].export_name, "vda-nbd");
	config_free(c);
}

Test(config, first_error_wins)
{
	expect_error(COLOFS "buffer = nope\nfoo = bar\n[bogus]\n" DISK,
		     "t.ini:3:", "bad value for buffer");
}

Test(config, parse_errors_beat_missing_keys)
{
	/* mountpoint is missing, but the unknown key on line 2 comes first. */
	expect_error("[colofs]\nbogus = 1\n" DISK, "t.ini:2:",
		     "unknown key 'bogus'");
}

Test(config, round_trip_of_defaults)
{
	struct config *c = load_ok(COLOFS DISK);

	assert_round_trip(c);
	config_free(c);
}

Test(config, round_trip_of_every_key)
{
	struct config *c = load_ok(sample);

	assert_round_trip(c);
	config_free(c);
}

Test(config, dump_shows_defaults)
{
	struct config *c = load_ok(COLOFS DISK);
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	config_dump(c, fp);
	fclose(fp);
	cr_assert_not_null(strstr(text, "\nbuffer = memory\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nbuffer_limit = 0\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nallow_other = true\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nallow_chown = true\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nformat = raw\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nexport = vda\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nmode = 0600\n"), "%s", text);
	cr_assert_not_null(strstr(text, "\nowner = root\n"), "%s", text);
	free(text);
	config_free(c);
}

Test(config, free_null_is_a_noop)
{
	config_free(NULL);
}

Test(config, enum_names)
{
	cr_assert_str_eq(config_mode_name(CONFIG_MODE_SECONDARY), "secondary");
	cr_assert_str_eq(config_buffer_name(CONFIG_BUFFER_MEMORY), "memory");
	cr_assert_str_eq(config_buffer_name(CONFIG_BUFFER_FILE), "file");
}

Test(config, nbd_bounds_defaults)
{
	struct config *c = load_ok(COLOFS DISK);

	cr_assert_eq(c->max_connections, 16);
	cr_assert_eq(c->max_handshakes, 128);
	cr_assert_eq(c->max_handshakes_per_address, 16);
	cr_assert_eq(c->io_timeout, 30);
	cr_assert_eq(c->nbd_memory_limit, UINT64_C(256) << 20);
	cr_assert_eq(c->nbd_conn_memory_limit, UINT64_C(64) << 20);
	config_free(c);
}

Test(config, nbd_bounds_are_read)
{
	struct config *c = load_ok(COLOFS "max_connections = 1\n"
				   "max_handshakes = 1024\n"
				   "max_handshakes_per_address = 3\n"
				   "io_timeout = 0\n"
				   "nbd_memory_limit = 1G\n"
				   "nbd_conn_memory_limit = 32M\n" DISK);

	cr_assert_eq(c->max_connections, 1);
	cr_assert_eq(c->max_handshakes, 1024);
	cr_assert_eq(c->max_handshakes_per_address, 3);
	cr_assert_eq(c->io_timeout, 0);
	cr_assert_eq(c->nbd_memory_limit, UINT64_C(1) << 30);
	cr_assert_eq(c->nbd_conn_memory_limit, UINT64_C(32) << 20);
	config_free(c);
}

Test(config, nbd_bounds_reject_out_of_range)
{
	expect_error(COLOFS "max_connections = 0\n" DISK, "t.ini:3:",
		     "bad value for max_connections: '0' (a number from 1 to 1024)");
	expect_error(COLOFS "max_handshakes = 1025\n" DISK, "t.ini:3:",
		     "bad value for max_handshakes");
	expect_error(COLOFS "max_handshakes_per_address = 0\n" DISK,
		     "t.ini:3:", "bad value for max_handshakes_per_address");
	expect_error(COLOFS "io_timeout = 86401\n" DISK, "t.ini:3:",
		     "bad value for io_timeout");
	expect_error(COLOFS "nbd_memory_limit = 31M\n" DISK, "t.ini:3:",
		     "bad value for nbd_memory_limit: '31M' (32M");
	expect_error(COLOFS "nbd_memory_limit = 64M\n"
		     "nbd_conn_memory_limit = 128M\n" DISK, "t.ini:4:",
		     "nbd_conn_memory_limit (134217728) is over nbd_memory_limit (67108864)");
	expect_error(COLOFS "nbd_memory_limit = 32M\n" DISK, "t.ini:3:",
		     "nbd_conn_memory_limit (67108864) is over nbd_memory_limit");
}

/* ---- TLS and access control ---- */

Test(config, tls_defaults_to_require_with_credentials)
{
	struct config *c;

	c = load_ok(COLOFS "listen = 127.0.0.1:10809\n"
		    "tls_psk_file = /etc/colofs/keys.psk\n" DISK);
	cr_assert_eq(c->tls, CONFIG_TLS_REQUIRE);
	cr_assert(c->tls_verify_peer);
	config_free(c);
	c = load_ok(COLOFS "listen = 127.0.0.1:10809\n" DISK);
	cr_assert_eq(c->tls, CONFIG_TLS_OFF);
	config_free(c);
}

Test(config, tls_without_credentials_is_an_error)
{
	expect_error(COLOFS "tls = require\n" DISK, "t.ini:3:",
		     "tls = require needs tls_psk_file or tls_certificates");
	expect_error(COLOFS "tls = maybe\n" DISK, "t.ini:3:",
		     "expected off, on or require");
}

Test(config, non_loopback_listen_without_credentials_is_refused)
{
	expect_error(COLOFS "listen = 0.0.0.0:10809\n" DISK, "t.ini:3:",
		     "anyone who can reach it could read and overwrite the disks");
	expect_error(COLOFS "listen = [::]:10809\n" DISK, "t.ini:3:",
		     "not a loopback address");
	expect_error(COLOFS "listen = backup.example:10809\n" DISK, "t.ini:3:",
		     "not a loopback address");
}

Test(config, non_loopback_listen_is_allowed_with_credentials_or_tls_off)
{
	struct config *c;

	c = load_ok(COLOFS "listen = 0.0.0.0:10809\n"
		    "tls_certificates = /etc/colofs/pki\n" DISK);
	cr_assert_eq(c->tls, CONFIG_TLS_REQUIRE);
	config_free(c);
	c = load_ok(COLOFS "listen = 0.0.0.0:10809\ntls = off\n" DISK);
	cr_assert_eq(c->tls, CONFIG_TLS_OFF);
	config_free(c);
	c = load_ok(COLOFS "listen = [::1]:10809\n" DISK);
	config_free(c);
}

Test(config, tls_authz_splits_at_bars)
{
	struct config *c;

	c = load_ok(COLOFS "tls_certificates = /etc/colofs/pki\n"
		    "tls_authz = CN=primary,O=Example | qemu\n" DISK);
	cr_assert_eq(c->nauthz, 2);
	cr_assert_str_eq(c->authz[0], "CN=primary,O=Example");
	cr_assert_str_eq(c->authz[1], "qemu");
	config_free(c);
	expect_error(COLOFS "tls_psk_file = /k\ntls_authz = a||b\n" DISK,
		     "t.ini:4:", "an empty item");
	expect_error(COLOFS "tls_authz = qemu\n" DISK, "t.ini:3:",
		     "tls_authz needs TLS");
	expect_error(COLOFS "tls_psk_file = /k\ntls = on\ntls_authz = qemu\n"
		     DISK, "t.ini:5:", "tls_authz needs tls = require");
}

Test(config, allow_parses_networks)
{
	struct config *c;

	c = load_ok(COLOFS "listen = 0.0.0.0:10809\ntls_psk_file = /k\n"
		    "allow = 192.0.2.0/24, 10.1.2.3, ::1, 2001:db8::/32\n" DISK);
	cr_assert_eq(c->nallow, 4);
	cr_assert_eq(c->allow_nets[0].family, AF_INET);
	cr_assert_eq(c->allow_nets[0].bits, 24);
	cr_assert_eq(c->allow_nets[1].bits, 32);
	cr_assert_eq(c->allow_nets[2].family, AF_INET6);
	cr_assert_eq(c->allow_nets[2].bits, 128);
	cr_assert_eq(c->allow_nets[3].bits, 32);
	config_free(c);
	expect_error(COLOFS "listen = 127.0.0.1:1\nallow = 10.0.0.0/33\n" DISK,
		     "t.ini:4:", "the prefix length must be 0 to 32");
	expect_error(COLOFS "listen = 127.0.0.1:1\nallow = example.com\n" DISK,
		     "t.ini:4:", "not an IPv4 or IPv6 address");
	expect_error(COLOFS "listen = unix:/run/s\nallow = 10.0.0.1\n" DISK,
		     "t.ini:4:", "allow needs a TCP listen");
}

Test(config, listen_mode_and_group_are_for_unix_sockets)
{
	struct config *c;

	c = load_ok(COLOFS "listen = unix:/run/s\nlisten_mode = 0660\n"
		    "listen_group = 0\n" DISK);
	cr_assert_eq(c->listen_mode, 0660);
	cr_assert_eq(c->listen_gid, 0);
	config_free(c);
	c = load_ok(COLOFS "listen = unix:/run/s\n" DISK);
	cr_assert_eq(c->listen_mode, 0600);
	cr_assert_eq(c->listen_gid, (gid_t)-1);
	config_free(c);
	expect_error(COLOFS "listen = 127.0.0.1:1\nlisten_mode = 0666\n" DISK,
		     "t.ini:4:", "need listen = unix:/PATH");
}

Test(config, tls_keys_round_trip_through_the_dump)
{
	struct config *a, *b;
	char *text = NULL;
	size_t len = 0;
	FILE *fp;

	a = load_ok(COLOFS "listen = 0.0.0.0:10809\n"
		    "tls_psk_file = /etc/colofs/keys.psk\n"
		    "tls_certificates = /etc/colofs/pki\n"
		    "tls_verify_peer = false\n"
		    "tls_authz = qemu | CN=primary,O=Example\n"
		    "allow = 192.0.2.0/24, ::1\n" DISK);
	fp = open_memstream(&text, &len);
	config_dump(a, fp);
	fclose(fp);
	b = config_load_string(text, "dump", err, sizeof err);
	cr_assert_not_null(b, "dump does not parse back: %s\n%s", err, text);
	cr_assert_eq(b->tls, CONFIG_TLS_REQUIRE);
	cr_assert_str_eq(b->tls_psk_file, a->tls_psk_file);
	cr_assert_str_eq(b->tls_certificates, a->tls_certificates);
	cr_assert_eq(b->tls_verify_peer, false);
	cr_assert_eq(b->nauthz, 2);
	cr_assert_eq(b->nallow, 2);
	config_free(a);
	config_free(b);
	free(text);
}
