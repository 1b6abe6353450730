# kpod: one-command set-up and checks on a Debian machine (run as root).
#   make run    install everything, then run a real container
#   make test   install everything, then run the whole test suite
#   make bench  install everything (and podman), then measure kpod against podman

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KPOD := $(VENV)/bin/kpod
PLUGINS := runtime_runc runtime_crun storage_overlay storage_vfs net_cni
PLUGIN_DIRS := $(addprefix plugins/,$(PLUGINS))
PIP_STAMP := $(VENV)/.installed
APT_STAMP := .apt-installed
# install locations (packagers: PREFIX=/usr, DESTDIR=staging directory)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system

# Debian packages the engine and its tests use for real.
APT_PACKAGES := runc crun conmon containernetworking-plugins golang-github-containernetworking-plugin-dnsname dnsmasq-base busybox-static catatonit \
	skopeo docker-registry gnupg openssl iptables iproute2 tmux python3-venv ca-certificates systemd
BENCH_PACKAGES := podman hyperfine

.PHONY: all deps venv run test unit install install-systemd bench clean distclean check-docs

all: venv

# Installs only what is missing, so a second run costs one dpkg-query.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(PIP_STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS)) | deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	@# editable_mode=compat: a plain path line in a .pth instead of an import hook that every
	@# python start (so every kpod command) would pay for (~10 ms here).
	$(PY) -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
	$(PY) -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat $(addprefix -e ,$(PLUGIN_DIRS))
	@# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every kpod run would recompile.
	$(PY) -m compileall -q libpod_core $(PLUGIN_DIRS) >/dev/null
	@touch $@

venv: deps $(PIP_STAMP)

install: venv install-systemd
	install -d $(DESTDIR)$(BINDIR)
	ln -sf $(abspath $(KPOD)) $(DESTDIR)$(BINDIR)/kpod

# kpod-restart.service (podman-restart.service's counterpart: the "always" containers at
# boot), naming the kpod in $(BINDIR). Needs no venv, so packagers can run it alone.
install-systemd:
	install -d $(DESTDIR)$(SYSTEMD_UNIT_DIR)
	sed 's|/usr/bin/kpod |$(BINDIR)/kpod |' contrib/systemd/kpod-restart.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/kpod-restart.service
	chmod 644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/kpod-restart.service

# The main job: a real container from a locally built busybox image.
run: venv
	@$(PY) -m libpod_core.demo

test: venv
	$(PY) -m pytest -q -p no:cacheprovider tests $(addsuffix /tests,$(PLUGIN_DIRS))

unit: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

bench: venv
	@missing=$$(for p in $(BENCH_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	$(PY) -m compileall -q libpod_core $(PLUGIN_DIRS) >/dev/null
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info plugins/*/*.egg-info plugins/*/build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
