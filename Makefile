# nabla containers for containerd.
#   make            build the tender, the shim and the test guests (release)
#   make test       install test dependencies, build, lint and run every test (what CI runs)
#   make demo       run a unikernel through a private containerd with the nabla runtime
#   make bench      run the benchmarks and print each figure next to its baseline
#   make install    install the binaries into $(PREFIX)/bin

PREFIX ?= /usr/local
CARGO ?= cargo
RELEASE_DIR := target/release
GUEST_DIR := target/guests/release

.PHONY: all build guests deps test lint unit-test integration-test demo bench install uninstall clean

all: build guests

build:
	$(CARGO) build --release --workspace --bins

guests:
	cd integration-tests/guests && $(CARGO) build --release

deps:
	scripts/install-deps.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd integration-tests/guests && $(CARGO) fmt --all --check && $(CARGO) clippy --release -- -D warnings

# Tests run against the release binaries and the guests built above.
test: deps all lint
	$(CARGO) test --release --workspace -- --test-threads=2

demo: deps all
	scripts/demo.sh

bench: deps all
	$(CARGO) run --release -p nabla-integration-tests --bin nabla-bench

install: build
	install -D -m 0755 $(RELEASE_DIR)/nabla-tender $(DESTDIR)$(PREFIX)/bin/nabla-tender
	install -D -m 0755 $(RELEASE_DIR)/containerd-shim-nabla-v2 $(DESTDIR)$(PREFIX)/bin/containerd-shim-nabla-v2

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/nabla-tender $(DESTDIR)$(PREFIX)/bin/containerd-shim-nabla-v2

clean:
	$(CARGO) clean
