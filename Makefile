# nabla containers for containerd.
#   make            build the tender, the shim and the test guests (release)
#   make test       install test dependencies, build, lint and run every test (what CI runs)
#   make demo       run a unikernel through a private containerd with the nabla runtime
#   make bench      run the benchmarks and print each figure next to its baseline
#   make reliability  the long churn and fuzz runs, every fault case repeated, a table
#   make layout     re-measure the order the shim's functions are linked in
#   make install    install the binaries into $(PREFIX)/bin

PREFIX ?= /usr/local
, := ,
CARGO ?= cargo
RELEASE_DIR := target/release
GUEST_DIR := target/guests/release

.PHONY: all build guests deps test lint unit-test integration-test demo bench reliability layout install uninstall clean

all: build guests

# The tender and the shim are linked statically (static PIE, so still randomised): no dynamic
# loader work between exec and the guest's first instruction or at each of the shim's three
# execs per container, fewer pages per shim, and binaries that run on any x86_64 Linux node
# whatever its libc. Built in their own target directory so that the flag does not reach
# build scripts and proc-macros, then put next to the other binaries. They are built with the
# `dist` profile (size-optimised, whole-program LTO) and packed relative relocations (DT_RELR):
# the smaller image and relocation table are fewer pages to read and map at every exec.
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_DIR := target/static
STATIC_BINS := nabla-tender containerd-shim-nabla-v2
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs
# The functions a container's life runs in the shim are linked first, together (the order
# `make layout` measured): a shim then maps a few 64 KiB windows of code instead of nearly all
# of it. Symbols the list names that no longer exist are skipped. The order needs rustc's own
# lld, the default linker from Rust 1.90 on; older toolchains link in the default order.
SHIM_LINK_ORDER := $(if $(shell [ "$$($(CARGO) --version | cut -d. -f2)" -ge 90 ] 2>/dev/null && echo y),\
	-C link-arg=-Wl$(,)--symbol-ordering-file=$(CURDIR)/shim/layout/symbol-order \
	-C link-arg=-Wl$(,)--no-warn-symbol-ordering)
# Tests, benchmarks and reliability runs use these installed binaries: `cargo test` relinks
# target/release/nabla-tender (the tender's own tests need the binary) as a dynamic build.
export NABLA_BIN_DIR := $(CURDIR)/$(STATIC_DIR)/$(STATIC_TARGET)/dist

build:
	$(CARGO) build --release --workspace --bins
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --profile dist -p nabla-tender \
		--target $(STATIC_TARGET) --target-dir $(STATIC_DIR)
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) rustc --profile dist -p containerd-shim-nabla \
		--bin containerd-shim-nabla-v2 --target $(STATIC_TARGET) --target-dir $(STATIC_DIR) \
		-- $(SHIM_LINK_ORDER)
	for b in $(STATIC_BINS); do \
		install -m 0755 $(STATIC_DIR)/$(STATIC_TARGET)/dist/$$b $(RELEASE_DIR)/$$b || exit 1; \
	done

guests:
	cd integration-tests/guests && $(CARGO) build --release

deps:
	scripts/install-deps.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd integration-tests/guests && $(CARGO) fmt --all --check && $(CARGO) clippy --release -- -D warnings

# Tests run against the installed (static) binaries and the guests built above.
test: deps all lint
	$(CARGO) test --release --workspace -- --test-threads=2

demo: deps all
	scripts/demo.sh

# The long versions of the reliability tests (CI runs short ones as part of `make test`).
reliability: deps all
	CARGO=$(CARGO) scripts/reliability.sh

bench: deps all
	$(CARGO) run --release -p nabla-integration-tests --bin nabla-bench

# Regenerates shim/layout/symbol-order (see scripts/layout.sh).
layout: deps all
	CARGO=$(CARGO) scripts/layout.sh

install: build
	for b in $(STATIC_BINS); do \
		install -D -m 0755 $(STATIC_DIR)/$(STATIC_TARGET)/dist/$$b $(DESTDIR)$(PREFIX)/bin/$$b || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/nabla-tender $(DESTDIR)$(PREFIX)/bin/containerd-shim-nabla-v2

clean:
	$(CARGO) clean
