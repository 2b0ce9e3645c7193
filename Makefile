# drd — the two commands a new machine needs are `make run` and `make test`.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= etc/drd.yaml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Everything drd needs to build and to run its full test suite on Debian 12.
DEB_PACKAGES := build-essential cmake ninja-build pkg-config git \
  libboost1.81-dev libboost-json1.81-dev libyaml-cpp-dev libpq-dev libsqlite3-dev \
  libspdlog-dev libfmt-dev libsystemd-dev catch2 libzstd-dev libssl-dev libcli11-dev \
  postgresql-15 postgresql-client-15 sqlite3 zstd iproute2 procps util-linux python3 \
  systemd man-db groff-base file dpkg-dev chromium haproxy clang libclang-rt-14-dev strace libfaketime \
  etcd-server etcd-client python3-sqlalchemy python3-psycopg2

.PHONY: all deps build run test test-build test-unit test-etcd test-integration asan tsan bench package clean chaos fuzz fuzz-short fuzz-build

all: build

# Idempotent and quiet: apt runs only when a package is missing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The embedded default: an image-metadata primary under var/data/ (created once
# if missing), two standbys that drd seeds itself, state and backups under var/.
run: build
	@mkdir -p var/data var/drd var/backups
	@[ -s var/data/images_primary.db ] || sqlite3 var/data/images_primary.db \
	  "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, url TEXT NOT NULL, \
	   sha256 TEXT, size INTEGER, path TEXT, crawled_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')));" >/dev/null
	@echo "drd starting; in another shell: $(BUILD)/bin/drctl --config $(CONFIG) status"
	$(BUILD)/bin/drd --config $(CONFIG) --foreground

# The whole suite: unit tests, then real SQLite / PostgreSQL / process tests, built with
# AddressSanitizer + UndefinedBehaviorSanitizer in $(TEST_BUILD) (make run and make bench
# use the plain $(BUILD)). Every sanitized process -- test binaries, each drd and drctl they
# start -- writes any report under $(TEST_BUILD)/sanitizer/; a report fails the run even
# when the process that wrote it was killed or its exit status was not checked.
# A failed test fails the run: there is no rerun (docs/reliability.md, "Flaky tests").
TEST_BUILD ?= build-test
SAN_LOGS = $(CURDIR)/$(TEST_BUILD)/sanitizer
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:verify_asan_link_order=0:log_path=$(SAN_LOGS)/asan \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(SAN_LOGS)/ubsan
# -O0 without debug info: the build is what makes `make test` long (250 compiler runs on 2
# cores). On a clean clone it took about 7.5 min at -O0 against 13 min at -O1 -g1, and the
# whole `make test` 13.6 min against 20. Sanitizer reports still name the functions; for
# file:line, rebuild with -g1.
$(TEST_BUILD)/build.ninja:
	cmake -S . -B $(TEST_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRD_ASAN=ON \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O0 -DNDEBUG"
test-build: deps $(TEST_BUILD)/build.ninja
	cmake --build $(TEST_BUILD) -j $(JOBS)
test: test-build
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	cd $(TEST_BUILD) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS) --timeout 600
	@if ls $(SAN_LOGS)/* >/dev/null 2>&1; then echo "sanitizer reports:"; \
	  for f in $(SAN_LOGS)/*; do echo "== $$f"; cat "$$f"; done; exit 1; fi; echo "sanitizers: no report"
	$(MAKE) --no-print-directory fuzz-short
test-unit: test-build
	cd $(TEST_BUILD) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS) -L unit

# Multi-host mode on a real 3-member etcd cluster (docs/multi-host.md); also part of `test`.
test-etcd: test-build
	cd $(TEST_BUILD) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS) -L etcd

# `make test` already runs everything under ASan + UBSan; kept as a name for it.
asan: test
# The daemon's concurrency under ThreadSanitizer (gcc) in build-tsan: the tests that run
# drd's threads (core, e2e with real drd processes, replication, monitoring). Suppressions,
# each with its reason, in tests/tsan.supp; any other report fails the run.
TSAN_TESTS ?= test_core test_replication test_monitoring test_e2e
tsan: deps
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDRD_TSAN=ON
	cmake --build build-tsan -j $(JOBS) --target drd drctl drd-example-writer $(TSAN_TESTS)
	@failed=0; for t in $(TSAN_TESTS); do echo "== $$t (ThreadSanitizer)"; \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	    build-tsan/bin/$$t || failed=1; done; exit $$failed

# The chaos suite (tests/chaos/, docs/reliability.md): DRD_CHAOS_TRIALS trials of every
# scenario of every engine (sqlite, pg, mh: multi-host with etcd), round robin, within
# DRD_CHAOS_SECONDS; prints a table, exits 1 on any broken invariant. Niced: the machine is
# shared. The short run (single-host scenarios only) is part of `make test`.
DRD_CHAOS_TRIALS ?= 50
DRD_CHAOS_SECONDS ?= 10800
DRD_CHAOS_ENGINE ?= all
chaos: build
	nice -n 10 python3 tests/chaos/chaos.py --bin $(BUILD)/bin --engine $(DRD_CHAOS_ENGINE) \
	  --trials $(DRD_CHAOS_TRIALS) --budget $(DRD_CHAOS_SECONDS) --json $(BUILD)/chaos-results.json

# libFuzzer targets (tests/fuzz/, docs/reliability.md): a separate clang build in build-fuzz
# with coverage instrumentation + ASan + UBSan, each target run on its corpus for
# DRD_FUZZ_SECONDS (fuzz) or 10 s (fuzz-short, part of `make test`); any crash fails.
FUZZ_BUILD ?= build-fuzz
DRD_FUZZ_SECONDS ?= 600
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz-build: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$(FUZZ_SAN)" -DCMAKE_CXX_FLAGS="$(FUZZ_SAN)" >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) $(DRD_FUZZ_SECONDS)

fuzz-short: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) 10

bench: build
	bench/run.sh $(BUILD)

package: build
	cd $(BUILD) && cpack -G DEB

clean:
	rm -rf $(BUILD) $(TEST_BUILD) build-asan build-tsan $(FUZZ_BUILD)
