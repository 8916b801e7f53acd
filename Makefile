# SPDX-License-Identifier: MIT
# colofs: COLO-style disk replication as a FUSE filesystem and NBD server.
#
#   make             build build/colofs and the tools
#   make check       install missing Debian packages (as root), build, run
#                    the unit and end-to-end tests
#   make check-asan  the same under ASan + UBSan (build-asan/)
#   make check-tsan  the engine's stress driver under TSan (build-tsan/)
#   make check-long  the slow tests (fuzzing, long soaks)
#   make demo        the main job: a primary, a secondary, a failover
#   make bench       core benchmarks (bench/)
#
# Sources are found by wildcard: add a file to core/, fs/, nbd/, tools/ or
# tests/unit/ and it is built.

BUILD    ?= build
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wvla \
            -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
ifeq ($(WERROR),1)
WARN     += -Werror
endif
SAN      ?=
PKGS     := fuse3 libqcow inih
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_LIBS  := $(shell pkg-config --libs criterion 2>/dev/null)
ALL_CFLAGS  = $(WARN) $(CFLAGS) $(SAN) -pthread -Icore $(PKG_CFLAGS) -MMD -MP
LDLIBS      = $(PKG_LIBS) -pthread $(SAN)

# What the build and the tests need, as Debian packages.
DEB_PKGS := build-essential pkg-config libfuse3-dev fuse3 libqcow-dev \
            libqcow-utils libinih-dev libcriterion-dev libnbd-dev libnbd-bin \
            python3-libnbd qemu-utils qemu-system-x86 qemu-block-extra \
            util-linux procps psmisc clang libclang-rt-dev fio

CORE_SRC  := $(sort $(wildcard core/*.c))
FRONT_SRC := $(sort $(wildcard fs/*.c nbd/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
UNIT_SRC  := $(sort $(wildcard tests/unit/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
FRONT_OBJ := $(FRONT_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ  := $(UNIT_SRC:%.c=$(BUILD)/%.o)
CORE_LIB  := $(BUILD)/libcolofs-core.a
TOOLS     := $(TOOL_SRC:tools/%.c=$(BUILD)/%)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench-%)
COLOFS    := $(if $(FRONT_SRC),$(BUILD)/colofs)

.PHONY: all check check-unit check-e2e check-asan check-tsan check-long deps demo \
        bench clean

all: $(CORE_LIB) $(COLOFS) $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/colofs: $(FRONT_OBJ) $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/tools/%.o $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench-%: $(BUILD)/bench/%.o $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lm

$(BUILD)/tests/unit-tests: $(UNIT_OBJ) $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(CRIT_LIBS)

# Installs what is missing when run as root; otherwise says what to run.
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing: $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q >/dev/null && \
		apt-get install -y -q --no-install-recommends $$missing >/dev/null || exit 1; \
	else \
		echo "missing packages; run:"; \
		echo "  sudo apt-get install -y $$missing"; exit 1; \
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

$(BUILD)/stress: $(BUILD)/tests/stress/stress.o $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The engine's locking under ThreadSanitizer, through a driver that needs
# no test framework (criterion's arena does not run under TSan).
check-tsan: deps
	@$(MAKE) --no-print-directory BUILD=build-tsan CFLAGS="-O1 -g" \
		SAN="-fsanitize=thread" build-tsan/stress
	TSAN_OPTIONS=halt_on_error=1 build-tsan/stress 3

check-long: check
	@COLOFS_LONG=1 tests/run-all $(BUILD) long

demo: deps all
	@tests/demo $(BUILD)

bench: all $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf build build-asan build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
