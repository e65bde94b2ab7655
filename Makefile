# Tashi: the two commands are `make demo` and `make test`; `make help` lists the rest.
#
# Every target that runs project code first runs scripts/bootstrap.sh, which installs whatever is
# missing on a Debian 12 machine (apt packages, the .venv virtualenv, the project) and is quick
# when nothing is.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tashi-installed
PYTEST_ARGS ?=

.PHONY: help packages bootstrap test check check-format check-lint check-types check-imports \
	check-tests demo demo-stop demo-control bench defaults clean distclean image debian-image

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  make %-14s %s\n", $$1, $$2}'

packages: ## install missing Debian packages (checked on every run; quick when all are there)
	@scripts/bootstrap.sh packages

# The virtualenv with the project installed: a real file, remade when its inputs change.
$(STAMP): pyproject.toml scripts/bootstrap.sh | packages
	@scripts/bootstrap.sh venv

bootstrap: packages $(STAMP) ## install everything missing: Debian packages, .venv, the project

# Every check, in this order, each run even when one before it failed (-k), so one run reports
# all that is wrong; make fails if any check failed. pytest comes last, so its closing line is the
# run's last. The guest images first, with their progress lines: on a clean machine the tiny
# guest's kernel takes minutes to compile and the Debian guest 1.5 to 2.5 minutes to install,
# which a test's fixture would otherwise do without a word.
test: bootstrap image debian-image ## ruff (lint, format), mypy, import layers, pytest: all reported, any fails it
	@$(MAKE) -k check-format check-lint check-types check-imports check-tests

check: test ## the same as make test (what .ci/run runs)

check-format:
	$(BIN)/ruff format --check .

check-lint:
	$(BIN)/ruff check .

check-types:
	$(BIN)/mypy

check-imports:
	$(BIN)/lint-imports

check-tests: image debian-image
	@$(call run_pytest)

IMAGE_DIR := var/images
TINY_IMAGE := $(IMAGE_DIR)/tashi-tiny.qcow2

image: $(TINY_IMAGE) ## build the tiny guest: var/images/tashi-tiny.qcow2 (+ .kernel .initrd .cmdline)

# A real file: made when missing or when a module that defines the guest changed. tashi-image
# itself skips the work when its recipe stamp matches, so the touch only tells make it is current.
$(TINY_IMAGE): $(addprefix src/tashi/guestimage/,builder.py guestfiles.py cpio.py kbuild.py kmod.py vmlinux.py) | bootstrap
	$(BIN)/tashi-image build --out $(IMAGE_DIR)
	touch $@

DEBIAN_IMAGE := $(IMAGE_DIR)/tashi-debian.qcow2

debian-image: $(DEBIAN_IMAGE) ## build Debian 12 with cloud-init and OpenSSH: var/images/tashi-debian.qcow2 (root)

# Made like the tiny image, by mmdebstrap as root (about 90 s, most of it dpkg; docs/guest-image.md).
$(DEBIAN_IMAGE): $(addprefix src/tashi/guestimage/,debian.py debianfiles.py rootfs.py steps.py vmlinux.py) | bootstrap
	$(BIN)/tashi-image debian --out $(IMAGE_DIR)
	touch $@

demo: bootstrap ## a 3-host cluster on this machine (root): six VMs, DNS, a host crash; left running
	$(BIN)/python scripts/demo_cluster.py

demo-stop: ## stop the cluster `make demo` left running (and the control-plane demo's)
	@if [[ -x $(BIN)/python ]]; then $(BIN)/python scripts/demo_cluster.py stop; fi
	scripts/demo.sh stop

demo-control: bootstrap ## the control-plane demo: a cluster manager under var/demo, no hosts
	scripts/demo.sh

bench: bootstrap ## run the benchmarks in bench/ and print their table
	@if [[ -f bench/__main__.py ]]; then $(BIN)/python -m bench; \
	elif [[ -f bench/run.py ]]; then $(BIN)/python bench/run.py; \
	else echo "make bench: bench/ has no __main__.py or run.py yet" >&2; exit 1; fi

defaults: $(STAMP) ## regenerate etc/TashiDefaults.cfg from src/tashi/config/settings.py
	$(BIN)/python -m tashi.config.defaults > etc/TashiDefaults.cfg.new
	mv etc/TashiDefaults.cfg.new etc/TashiDefaults.cfg

clean: demo-stop ## remove caches, build output and the demo's state (keeps .venv)
	rm -rf var build .pytest_cache .mypy_cache .ruff_cache .hypothesis src/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove the virtualenv too
	rm -rf $(VENV)

# pytest exits 5 when it collected no test; for us that is a failure like any other.
define run_pytest
$(BIN)/pytest $(PYTEST_ARGS) || { rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "make: pytest collected no tests; failing" >&2; fi; \
	exit $$rc; }
endef
