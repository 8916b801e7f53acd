# SPDX-License-Identifier: MIT
# colofs: COLO-style disk replication as a FUSE filesystem and NBD server.
#
#   make             build build/colofs and the tools
#   make check       install missing Debian packages (as root), build, run
#                    the unit and end-to-end tests
#   make check-asan  the same under ASan + UBSan (build-asan/)
#   make check-tsan  the engine's stress driver and the NBD listener's
#                    barrier tests under TSan (build-tsan/)
#   make check-long  the slow tests (fuzzing, long soaks, Pacemaker)
#   make demo        the main job: a primary, a secondary, a failover
#   make bench       the engine's benchmark (tools/bench-core.c)
#   make deps        install the missing Debian packages (as root)
#   make man         the man pages (build/man/), from doc/*.md
#   make install     colofs, colofsctl, man pages, the systemd unit, the
#                    Pacemaker agent (ocf:colofs:colofs), a sample config
#                    and colofsctl's bash completion
#                    (PREFIX=/usr/local, DESTDIR, SYSCONFDIR)
#   make uninstall   removes them (a config you changed stays)
#   make format      apply .clang-format (core/'s style) to the C sources
#
# Sources are found by wildcard: add a file to core/, fs/ (or a folder in
# it: fs/fuse, fs/nbd, fs/link), tools/ or
# tests/unit/ and it is built.  core/ is the engine (libcolofs-core.a);
# fs/ is the daemon: every file but main.c goes into libcolofs-daemon.a,
# which the unit tests and the tools link too.
#
# pkg-config is asked only when a compile or link needs its answer, never
# while the Makefile is read, so that `make demo` on a fresh machine can
# install pkg-config and the -dev packages first (deps) and then build.

BUILD    ?= build
VERSION  := 0.1.0
PREFIX   ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR  ?=
BINDIR   := $(PREFIX)/bin
MANDIR   := $(PREFIX)/share/man
UNITDIR  := $(PREFIX)/lib/systemd/system
COMPDIR  := $(PREFIX)/share/bash-completion/completions
# Pacemaker looks only in /usr/lib/ocf/resource.d: install with PREFIX=/usr
# (or link the colofs dir there) for a cluster to find the agent.
OCFDIR   := $(PREFIX)/lib/ocf/resource.d/colofs
CONFDIR  := $(SYSCONFDIR)/colofs
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wvla \
            -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
ifeq ($(WERROR),1)
WARN     += -Werror
endif
SAN      ?=
PKGS     := fuse3 libqcow inih libnbd gnutls jansson libxxhash
# Each is computed once, at its first use (after deps has run).
lazy = $(eval $1 := $$(shell $2))$($1)
PKG_CFLAGS = $(call lazy,PKG_CFLAGS,pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(call lazy,PKG_LIBS,pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_LIBS  = $(call lazy,CRIT_LIBS,pkg-config --libs criterion 2>/dev/null)
ALL_CFLAGS  = $(WARN) $(CFLAGS) $(SAN) -pthread -Icore -Ifs $(PKG_CFLAGS) -MMD -MP \
              -DCOLOFS_VERSION='"$(VERSION)"'
LDLIBS      = $(PKG_LIBS) -pthread $(SAN)

# What the build and the tests need, as Debian packages.
DEB_PKGS := build-essential pkg-config libfuse3-dev fuse3 libqcow-dev \
            libqcow-utils libinih-dev libcriterion-dev libnbd-dev libnbd-bin \
            python3-libnbd qemu-utils qemu-system-x86 qemu-block-extra \
            util-linux procps psmisc clang libclang-rt-dev fio \
            libgnutls28-dev gnutls-bin go-md2man man-db groff-base systemd \
            python3-prometheus-client clang-format file libjansson-dev \
            libxxhash-dev bash-completion resource-agents libxml2-utils \
            linux-image-amd64 busybox-static cpio e2fsprogs

CORE_SRC   := $(sort $(wildcard core/*.c))
DAEMON_SRC := $(filter-out fs/main.c,$(sort $(wildcard fs/*.c fs/*/*.c)))
TOOL_SRC   := $(sort $(wildcard tools/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/*.c))

CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ   := $(UNIT_SRC:%.c=$(BUILD)/%.o)
CORE_LIB   := $(BUILD)/libcolofs-core.a
DAEMON_LIB := $(BUILD)/libcolofs-daemon.a
LIBS       := $(DAEMON_LIB) $(CORE_LIB)
TOOLS      := $(TOOL_SRC:tools/%.c=$(BUILD)/%)
COLOFS     := $(BUILD)/colofs
# Man pages: doc/NAME.SECTION.md -> $(BUILD)/man/NAME.SECTION
MAN_SRC    := doc/colofs.8.md doc/colofs.ini.5.md doc/colofsctl.8.md
MAN_PAGES  := $(MAN_SRC:doc/%.md=$(BUILD)/man/%)

.PHONY: all check check-unit check-e2e check-asan check-tsan check-long deps demo \
        bench format clean man install uninstall

all: $(COLOFS) $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(CORE_LIB): $(CORE_OBJ)
$(DAEMON_LIB): $(DAEMON_OBJ)
$(CORE_LIB) $(DAEMON_LIB):
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/colofs: $(BUILD)/fs/main.o $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/tools/%.o $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lm

$(BUILD)/tests/unit-tests: $(UNIT_OBJ) $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(CRIT_LIBS)

# The markdown in doc/ is the source; go-md2man (Debian's go-md2man) turns
# it into roff at build time, so the two cannot drift.  Its first line,
# "# NAME(SECTION): what it is", becomes the .TH title and a NAME section.
man: $(MAN_PAGES)

$(BUILD)/man/%: doc/%.md
	@mkdir -p $(dir $@)
	sed -e '1s/^# \([a-z.]*\)(\([0-9]\)): \(.*\)$$/% \1 \2 "" "colofs $(VERSION)"\n\n# NAME\n\n\1 \\- \3/' $< | \
		go-md2man >$@.tmp
	mv $@.tmp $@

# install -D makes the directories.  The unit's paths follow BINDIR and
# CONFDIR; the sample config never replaces an existing one.
install: $(COLOFS) $(BUILD)/colofsctl $(MAN_PAGES)
	install -D -m 0755 $(COLOFS) $(DESTDIR)$(BINDIR)/colofs
	install -D -m 0755 $(BUILD)/colofsctl $(DESTDIR)$(BINDIR)/colofsctl
	install -D -m 0644 $(BUILD)/man/colofs.8 $(DESTDIR)$(MANDIR)/man8/colofs.8
	install -D -m 0644 $(BUILD)/man/colofsctl.8 $(DESTDIR)$(MANDIR)/man8/colofsctl.8
	install -D -m 0644 $(BUILD)/man/colofs.ini.5 $(DESTDIR)$(MANDIR)/man5/colofs.ini.5
	install -D -m 0644 etc/colofsctl.bash-completion $(DESTDIR)$(COMPDIR)/colofsctl
	@mkdir -p $(DESTDIR)$(OCFDIR)
	sed 's|^COLOFS_DEFAULT=colofs$$|COLOFS_DEFAULT=$(BINDIR)/colofs|' tools/colofs.ocf \
		>$(DESTDIR)$(OCFDIR)/colofs
	chmod 0755 $(DESTDIR)$(OCFDIR)/colofs
	@mkdir -p $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/colofs/|$(CONFDIR)/|g' \
		etc/colofs@.service >$(DESTDIR)$(UNITDIR)/colofs@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/colofs@.service
	@if [ -e $(DESTDIR)$(CONFDIR)/example.ini ]; then \
		echo "keeping $(DESTDIR)$(CONFDIR)/example.ini"; \
	else \
		echo "install -D -m 0644 etc/colofs.ini $(DESTDIR)$(CONFDIR)/example.ini"; \
		install -D -m 0644 etc/colofs.ini $(DESTDIR)$(CONFDIR)/example.ini; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/colofs $(DESTDIR)$(BINDIR)/colofsctl \
		$(DESTDIR)$(MANDIR)/man8/colofs.8 \
		$(DESTDIR)$(MANDIR)/man8/colofsctl.8 \
		$(DESTDIR)$(MANDIR)/man5/colofs.ini.5 \
		$(DESTDIR)$(COMPDIR)/colofsctl \
		$(DESTDIR)$(UNITDIR)/colofs@.service $(DESTDIR)$(OCFDIR)/colofs
	@rmdir $(DESTDIR)$(OCFDIR) 2>/dev/null || true
	@if cmp -s etc/colofs.ini $(DESTDIR)$(CONFDIR)/example.ini; then \
		rm -f $(DESTDIR)$(CONFDIR)/example.ini; \
		rmdir $(DESTDIR)$(CONFDIR) 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(CONFDIR)/example.ini ]; then \
		echo "keeping $(DESTDIR)$(CONFDIR)/example.ini (changed)"; \
	fi

# Installs what is missing when run as root; otherwise says what to run.
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q >/dev/null && \
		apt-get install -y -q --no-install-recommends $$missing >/dev/null || exit 1; \
	else \
		echo "missing packages; as root, run:"; \
		echo "  apt-get install -y $$missing"; exit 1; \
	fi

check: deps
	@$(MAKE) --no-print-directory all $(BUILD)/tests/unit-tests $(BUILD)/stress
	@tests/run-all $(BUILD)

check-unit: all $(BUILD)/tests/unit-tests
	$(BUILD)/tests/unit-tests

check-e2e: all
	tests/e2e/run $(BUILD)

check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan CFLAGS="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		all build-asan/tests/unit-tests build-asan/stress
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	 tests/run-all build-asan

$(BUILD)/stress: $(BUILD)/tests/stress/stress.o $(LIBS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The engine's locking under ThreadSanitizer, through a driver that needs
# no test framework (criterion's arena does not run under TSan); then the
# daemon itself under TSan through the NBD listener's barrier sequence,
# its shutdown with a READ waiting for budget, and a short multi-connection
# fuzz run (each test fails on a sanitizer report in the daemon's log).
TSAN_E2E := nbd-barrier-budget nbd-shutdown-log nbd-fuzz-multiconn
check-tsan: deps
	@$(MAKE) --no-print-directory BUILD=build-tsan CFLAGS="-O1 -g" \
		SAN="-fsanitize=thread" build-tsan/stress build-tsan/colofs
	TSAN_OPTIONS=halt_on_error=1 build-tsan/stress 3
	@for t in $(TSAN_E2E); do \
		TSAN_OPTIONS=halt_on_error=1 tests/e2e/run build-tsan "" $$t || exit 1; \
	done

check-long: check
	@COLOFS_LONG=1 tests/run-all $(BUILD) long

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo $(BUILD)

bench: all
	$(BUILD)/bench-core

# Rewrites the C sources in place in the style of .clang-format.
FORMAT_SRC = $(wildcard core/*.[ch] fs/*.[ch] fs/*/*.[ch] tools/*.c tests/unit/*.[ch] \
             tests/stress/*.c)
format: deps
	clang-format -i $(FORMAT_SRC)

clean:
	rm -rf build build-asan build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
