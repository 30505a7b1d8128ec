# The README's two commands (run, test) and the chores (lint, bench).
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= .data
HOST   ?= 127.0.0.1
PORT   ?= 8080
SIM_PORT ?= 1161
APT_PACKAGES := snmpd snmp openssh-server chromium iputils-ping fonts-dejavu-core iproute2 procps \
	samba samba-ad-provision winbind krb5-user slapd ldap-utils monitoring-plugins-basic
# `docker-compose config` validates docker-compose.yml without an engine; its recommended docker.io engine is not wanted.
LEAN_PACKAGES := docker-compose
# Node.js and npm (Lighthouse budgets) are often installed from elsewhere than Debian (e.g. nodesource's
# nodejs bundles npm, and Debian's npm then conflicts with it): install them only when the commands are missing.
NODE_PACKAGES := nodejs npm

.PHONY: run test lint bench venv deps-test system-deps postgres clean vendor

$(BIN)/pocketnoc: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

venv: $(BIN)/pocketnoc

## make run: install, migrate, start simulated devices and the server; prints where to sign in.
run: venv
	$(BIN)/pocketnoc migrate --data-dir $(DATA)
	@# Ctrl-C: pocketnoc says "stopped" and exits 130; that is not an error of make's to report again.
	@trap : INT; $(BIN)/pocketnoc demo --data-dir $(DATA) --host $(HOST) --port $(PORT) --sim-port $(SIM_PORT) || [ $$? -eq 130 ]

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$$missing $(NODE_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@missing=""; for p in $(LEAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (without recommends):$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Debian starts snmpd and sshd as system services on install; tests run their own.
	-@systemctl disable --now snmpd ssh samba-ad-dc smbd nmbd winbind slapd >/dev/null 2>&1 || true
	@# Without systemd (containers) the packages' init scripts may have started them anyway.
	-@for s in samba-ad-dc smbd nmbd winbind slapd; do service $$s stop >/dev/null 2>&1 || true; done

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start || true; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@pg_isready -h 127.0.0.1 -p 5432

deps-test: venv system-deps
	$(BIN)/pip install -q -e ".[demo,test]"

lint: deps-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## make test: install what the tests need, lint, then run the whole suite against real peers.
# Most tests wait on their peers (snmpd, sshd, Chromium, timeouts), not on a core: TEST_WORKERS pytest-xdist
# workers share the machine, each test module on one worker (its module-scoped peers start once); tests/conftest.py
# hands out the slowest modules first, and gives the scale-out cluster modules (which mostly wait out polling
# intervals) to one worker while the other three take the CPU-bound rest (8:58 against 9:56 with three workers
# sharing everything). --durations: the slowest tests, to see where the time goes.
# Tests marked `quiet` measure speed (Lighthouse, render time): they run afterwards, alone, on a machine the others
# no longer load (in the parallel run, Lighthouse's total blocking time went from 41 ms to 1.1 s: it measured the
# machine, not the page). Both runs always run; either failing fails `make test`.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/pytest -q -p no:cacheprovider
# The first run writes which modules hold the quiet tests it left out (tests/conftest.py), so the second imports only
# their modules; without that list (the first run broke off) it looks through the whole suite again.
QUIET_TESTS := test-artifacts/quiet-tests.txt
test: deps-test postgres lint
	mkdir -p test-artifacts && rm -f $(QUIET_TESTS)
	QUIET_TESTS_FILE=$(CURDIR)/$(QUIET_TESTS) $(PYTEST) -n $(TEST_WORKERS) --dist loadscope --durations=30 -m "not quiet"; \
	shared=$$?; \
	$(PYTEST) --durations=10 -m quiet $$(cat $(QUIET_TESTS) 2>/dev/null || echo tests); alone=$$?; \
	exit $$(( shared || alone ))

bench: deps-test
	$(BIN)/python -m bench.run

## make vendor: refresh the committed xterm.js files from npm at the versions web/package-lock.json records (run and
## test never need it: the files are in the repository, so no network is needed at run time).
XTERM := web/node_modules/@xterm
vendor:
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	cp $(XTERM)/xterm/lib/xterm.js $(XTERM)/xterm/css/xterm.css $(XTERM)/addon-fit/lib/addon-fit.js web/static/vendor/xterm/
	cp $(XTERM)/xterm/LICENSE web/static/vendor/xterm/LICENSE
	cp $(XTERM)/addon-fit/LICENSE web/static/vendor/xterm/LICENSE.addon-fit
	cd web/static/vendor/xterm && sha256sum xterm.js xterm.css addon-fit.js > SHA256SUMS
	rm -rf web/node_modules

clean:
	rm -rf $(VENV) $(DATA) build *.egg-info
