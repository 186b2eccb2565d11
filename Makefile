# Footprint: one entry point for every task. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
# The test hosts' Python version, to compile the modules each task of a scenario sends them (the test bed's
# callback tests/ansible_plugins/callback/module_bytecode.py: ~30% less CPU per task, the same code): Debian 13's
# is 3.13 (an interpreter of that version on this machine, where there is one), Debian 12's 3.11 (the venv's,
# molecule-docker). None found: the modules run from source, as without it.
PYTHON_313 := $(firstword $(wildcard /usr/bin/python3.13 /usr/local/bin/python3.13 $(HOME)/.pyenv/versions/3.13.*/bin/python3.13))
export FOOTPRINT_MODULE_PYTHON ?= $(PYTHON_313)
INVENTORY ?= inventory/local/hosts.yml
DEMO_HOST := footprint-demo
DEMO_IP := 10.77.0.10
DEMO_CA := footprint-demo-ca.crt

.PHONY: help deps venv artifacts lint test test-day2 test-testbed test-testbed-hosts test-testbed-roles test-testbed-ca test-testbed-local test-app molecule molecule-upgrade upgrade-previous molecule-docker molecule-cluster docker-down demo demo-down smoke backup restore upgrade rotate-certs docs fuzz bench

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

deps: ## install the machine packages the tests need (root; Debian/Ubuntu)
	@echo "deps: apt-get update: refreshing the package lists (a few seconds to ~30 s)"
	@apt-get update -qq
	@echo "deps: apt-get install: debootstrap, systemd-container, iptables, iproute2 (the test hosts);" \
	  "docker.io (the engine of the docker scenario, started by testbed/docker);" \
	  "postgresql, openjdk-17-jre-headless, maven (real stores for the app's integration tests);" \
	  "chromium (the browser the snippet and the dashboard are tested in) and libnss3-tools (certutil: the README walkthrough's CA trust);" \
	  "prometheus (promtool for the alert rules; the server the dashboard's Health panel is tested against); wrk (make bench's load generator);" \
	  "geoip-database and geoip-bin (the country databases and libGeoIP the countries' tests read and compare with);" \
	  "npm (vendors the dashboard's" \
	  "charting library at build time) only where no Node.js brings its own; ~1-2 min on a fresh machine"
	@# npm only where no Node.js brings its own: NodeSource's nodejs (as on the CI machines) ships npm
	@# and declares "Conflicts: npm", so asking apt for Debian's npm beside it fails the whole install.
	@DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  debootstrap systemd-container iptables iproute2 docker.io postgresql openjdk-17-jre-headless maven chromium libnss3-tools prometheus wrk geoip-database geoip-bin \
	  $$(command -v npm >/dev/null || echo npm) >/dev/null
	@echo "deps: npm: $$(command -v npm) $$(npm --version)"
	@echo "deps: done"

# actionlint ships no wheel that works offline (the PyPI wrappers download it from GitHub): it is
# built from its Go module by `make venv`, with the machine's Go (>= 1.25, which actionlint's
# go.mod asks for: Debian 12's golang-go 1.19 cannot build it). The go on the PATH, else the
# usual /usr/local/go.
ACTIONLINT_VERSION := v1.7.12
GO ?= $(or $(shell command -v go),$(wildcard /usr/local/go/bin/go),go)

venv: $(VENV)/.done $(VENV)/.actionlint-$(ACTIONLINT_VERSION) ## the control-node venv from requirements.txt (+ the app, editable; actionlint)
$(VENV)/.done: requirements.txt app/pyproject.toml app/vendor.json
	@echo "venv: $(VENV): creating it with python3 -m venv (if missing)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "venv: upgrading pip"
	@$(BIN)/pip install -q --upgrade pip
	@echo "venv: installing requirements.txt: Ansible, molecule, ansible-lint, pytest, testinfra and the store clients (~1 min the first time)"
	@$(BIN)/pip install -q -r requirements.txt
	@echo "venv: installing the app (./app, editable) with its test extras: FastAPI, confluent-kafka, psycopg," \
	  "clickhouse-connect, hypothesis, schemathesis, playwright (driving Debian's chromium; no browser download)"
	@$(BIN)/pip install -q -e './app[test]'
	@echo "venv: vendoring the dashboard's pinned JavaScript (app/vendor.json: npm pack, sha512-checked)"
	@python3 app/tools/vendor_js.py app
	@touch $@
$(VENV)/.actionlint-$(ACTIONLINT_VERSION): $(VENV)/.done
	@echo "venv: installing actionlint $(ACTIONLINT_VERSION) (GitHub workflow checker) into $(BIN) with go install (~25 s)"
	@command -v $(GO) >/dev/null || { echo "venv: no Go found (PATH, /usr/local/go/bin): actionlint needs Go >= 1.25 to build; install it from go.dev/dl or set GO=/path/to/go" >&2; exit 1; }
	@GOBIN=$(abspath $(BIN)) GOFLAGS=-buildvcs=false $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	@touch $@
	@echo "venv: ready ($(VENV))"

# The Kafka versions the test bed needs: the default one, and the newer one the upgrade scenario
# moves to (molecule/upgrade/host_vars/).
KAFKA_UPGRADE_VERSION := 4.1.2

artifacts: venv ## build (once, cached) the Debian 13 and 12 rootfs and the Kafka distributions (4.0.2, and 4.1.2 for upgrades)
	testbed/host rootfs
	testbed/host rootfs --suite bookworm
	testbed/kafka-dist/build
	KAFKA_VERSION=$(KAFKA_UPGRADE_VERSION) testbed/kafka-dist/build

lint: venv ## yamllint, ansible-lint (production), syntax checks, role docs, alert rules (promtool), ruff, mypy, actionlint
	yamllint --strict .
	actionlint
	ansible-lint --profile production
	ansible-playbook --syntax-check -i $(INVENTORY) playbooks/*.yml
	$(PY) tools/role-docs --check
	$(PY) tools/alert-rules
	ruff check app tests benchmarks tools testbed playbooks $(wildcard roles/*/filter_plugins)
	mypy --config-file app/pyproject.toml app/src
	mypy --ignore-missing-imports tests

# The test bed's suites: the checks of the test-host tool itself (they must not run beside a
# scenario: test_host.py's last check wants no other test host up, test_docker.py starts and stops
# dockerd), the role runs on test hosts of their own (the Kafka archive's checksum, bad input: they
# may run beside the scenarios, whose hosts and addresses differ, but not beside test_host.py), the
# pki role's CA steps (~3 min of CPU, on this machine) and the rest, on this machine alone (the roles'
# models, the ClickHouse stand-in, the backup program, ...). The last two may run beside anything.
# Each is a part of its own so that `make test` can put it in the shortest lane.
TESTBED_HOST_TESTS := testbed/tests/test_docker.py testbed/tests/test_host.py
TESTBED_ROLE_TESTS := testbed/tests/test_kafka_apache_source.py testbed/tests/test_role_inputs.py
TESTBED_CA_TESTS := testbed/tests/test_pki_rotation.py
test-testbed: test-testbed-hosts test-testbed-roles test-testbed-ca test-testbed-local ## the test bed's suites (the four below)

test-testbed-hosts: venv ## the test-host tool itself: several hosts, clean teardown also after a killed run, dockerd beside it
	$(BIN)/pytest -p no:cacheprovider --durations=30 $(TESTBED_HOST_TESTS)

test-testbed-roles: venv ## role runs on test hosts of their own: the Kafka archive's published checksum, bad input refused before any change
	$(BIN)/pytest -p no:cacheprovider --durations=30 $(TESTBED_ROLE_TESTS)

test-testbed-ca: venv ## the pki role's CA steps on this machine: a first CA, renewal, the CA replaced with an overlap in three steps
	$(BIN)/pytest -p no:cacheprovider --durations=30 $(TESTBED_CA_TESTS)

test-testbed-local: venv ## the rest of the test bed's checks, on this machine alone: the roles' models and inputs, the ClickHouse stand-in, the backup program
	$(BIN)/pytest -p no:cacheprovider --durations=30 $(addprefix --ignore=,$(TESTBED_HOST_TESTS) $(TESTBED_ROLE_TESTS) $(TESTBED_CA_TESTS)) \
	  testbed/tests testbed/clickhouse-standin/tests

test-app: venv artifacts ## app unit + integration tests against real Kafka, PostgreSQL, ClickHouse engine
	cd app && ../$(BIN)/pytest -p no:cacheprovider --durations=30

fuzz: venv artifacts ## schemathesis against a live collector and broker, 10,000+ requests (~20 min): 0 5xx
	cd app && FOOTPRINT_FUZZ_EXAMPLES=$${FOOTPRINT_FUZZ_EXAMPLES:-10000} ../$(BIN)/pytest -p no:cacheprovider -s \
	  tests/integration/test_fuzz_api.py

# make bench's reference revision: the consumer and the collector of this revision are measured in the
# same runs (the ratio column); the start of the speed work (benchmarks/RESULTS.md, section 13)
BENCH_REFERENCE ?= c932c4a
BENCH_ARGS ?=

bench: venv artifacts ## the benchmarks with a target, one table with targets and ratios to BENCH_REFERENCE (~13 min here; needs wrk); BENCH_ARGS="--read-size 10000000" for the 10M dashboard
	$(PY) benchmarks/bench.py --reference $(BENCH_REFERENCE) $(BENCH_ARGS)

molecule: venv artifacts ## the nspawn single-host scenario (Debian 13): converge site.yml, idempotence, check, the whole suite, a reboot (~22 min; not in make test)
	molecule test

molecule-cluster: venv artifacts ## the cluster scenario: three hosts, Kafka grown from one node to three, ClickHouse and the app on two, a broker killed, a store and a consumer paused (~28 min beside the docker scenario in CI run 54); on demand, each not in make test for CI's time: FOOTPRINT_CERT_RENEWAL=1 every host certificate re-issued under traffic (~4 min more), FOOTPRINT_LOST_HOST=1 a lost Kafka voter replaced (~6 min more), FOOTPRINT_CA_ROTATION=1 the CA replaced in three steps under traffic (~10), FOOTPRINT_CLUSTER_UPGRADE=1 upgrade.yml across the cluster through a broker that cannot start (~16)
	molecule test -s cluster

# The day-two checks make test leaves out for CI's time (issue 32: the cluster upgrade and the CA
# replaced under traffic do not fit the 45 minutes on 2 cores; the cluster scenario with them alone is
# ~50 min; since stop 55 also the host certificates renewed under traffic, ~4 min): all four on
# demand, in one run of the cluster scenario.
test-day2: venv artifacts ## the cluster scenario with every on-demand day-two check: the host certificates renewed, a lost Kafka voter replaced, the CA replaced in three steps, upgrade.yml across the cluster through a broker that cannot start, all under traffic (~55 min; not in make test)
	FOOTPRINT_CERT_RENEWAL=1 FOOTPRINT_LOST_HOST=1 FOOTPRINT_CA_ROTATION=1 FOOTPRINT_CLUSTER_UPGRADE=1 molecule test -s cluster

molecule-upgrade: venv artifacts ## the upgrade scenario: release v0.1.0 deployed, upgrade.yml under traffic, a failed gate (~8 min)
	molecule test -s upgrade

upgrade-previous: venv artifacts ## the upgrade scenario's previous release deployed on its host and kept in the test bed's cache, the host removed (~3 min alone the first time, ~30 s when kept); molecule-upgrade then boots the kept disk
	@# a scenario left created (an interrupted run) would skip create and prepare: destroy it first
	molecule destroy -s upgrade
	rc=0; FOOTPRINT_UPGRADE_PREPARE=previous.yml molecule create -s upgrade || rc=$$?; \
	  molecule destroy -s upgrade || rc=1; exit $$rc

# The docker scenario here: a local image from the test bed's rootfs (debian-12 or debian-13), the
# engine started by testbed/docker and stopped again, whatever the result. Debian 12 has no
# OpenJDK 21 and Adoptium is out of reach: its offline converge uses Debian's OpenJDK 17.
DOCKER_PLATFORM ?= debian-12
# Its second converge (idempotence) is left to the cluster scenario here (the same roles, ~4 min of
# CI's longest lane): `dependency`, a no-op step, takes its place; DOCKER_IDEMPOTENCE=idempotence
# runs it (the GitHub workflow always does). Check mode right after the converge still must predict
# no change (tests/test_check_mode.py).
DOCKER_IDEMPOTENCE ?= dependency
molecule-docker: venv artifacts ## the docker scenario on DOCKER_PLATFORM=debian-12|debian-13 (local image, dockerd started and stopped; ~29 min beside the cluster scenario)
	@case "$(DOCKER_PLATFORM)" in debian-12|debian-13) ;; *) echo "DOCKER_PLATFORM: debian-12 or debian-13" >&2; exit 2;; esac
	testbed/docker up --image $(DOCKER_PLATFORM)
	rc=0; FOOTPRINT_DOCKER_IMAGE=footprint-testbed/debian:$(subst debian-,,$(DOCKER_PLATFORM)) FOOTPRINT_DOCKER_PREBUILT=true \
	  FOOTPRINT_JAVA_MAJOR=$(if $(filter debian-12,$(DOCKER_PLATFORM)),17,21) FOOTPRINT_DOCKER_IDEMPOTENCE=$(DOCKER_IDEMPOTENCE) \
	  FOOTPRINT_MODULE_PYTHON=$(if $(filter debian-12,$(DOCKER_PLATFORM)),$(abspath $(PY)),$(PYTHON_313)) \
	  molecule test -s docker || rc=$$?; \
	  testbed/docker down || rc=1; testbed/docker leftovers || rc=1; exit $$rc

docker-down: ## remove the docker scenario's containers and network, stop the engine testbed/docker started
	testbed/docker down

# Three lanes side by side (tools/timed-parts: lanes joined by `+`, parts joined by `,` one after
# the other in their lane, `@PART` waits for PART of another lane to end). On 2 cores each part
# leaves much of the machine idle alone (the app's suite waits on its services: 77% idle; the
# docker scenario's single host converges one task at a time: 47%), and no two parts side by side
# share a port, host, network or database (the nspawn NAT works beside dockerd's, see
# testbed/tests/test_docker.py). Lane one: the app's suite, then the cluster scenario (three
# hosts, its certificate rotation); lane two: the test-host tool's own checks (test hosts and dockerd),
# the role runs on test hosts of their own, then the docker and the upgrade scenarios; lane three,
# once the host checks have ended: the upgrade scenario's previous release deployed and kept
# (`upgrade-previous`, ~3 min alone when its cache key is new, ~30 s when kept; the upgrade scenario,
# last in lane two, then boots that disk instead of deploying it there), the pki role's CA steps,
# the rest of the test bed's checks, then lint. The test hosts of the cluster and of
# `upgrade-previous` come up only once the host checks have ended (`@test-testbed-hosts`:
# test_host.py's last check wants no other test host). Lint does not run alone first (~1-2 min of
# one core): a lint failure still fails `make test`, once the lanes have ended. Since CI run 52 it
# runs last in lane three (not first: a failed part ends its lane, and the upgrade scenario waits
# for the previous release's deploy there), so that the cluster scenario, at the end of lane one,
# starts that much sooner. The closing table gives each part's seconds and how busy the CPUs were
# meanwhile.
# Measured (`.ci/run` from a clean clone, this 2-core machine, nothing else running): CI run 41
# (two lanes, the CA steps in lane one, the test bed's other checks and a cold deploy of the
# previous release (483 s) in lane two): 2,886 s to a failure; CI run 42 (this layout, the deploy
# kept): 2,738 s, lanes 2,458 (the cluster waiting for the app's suite), 2,676 and 495 s; CI run
# 43 (everything that needs no wait started at once: the app's suite and the upgrade scenario on
# lane three, the cluster and the docker scenario from the end of the host checks; the deploy not
# kept): 2,906 s, every part slower (cluster 1,648 -> 2,246 s, docker 1,661 -> 2,036); CI run 44
# (lint and the role runs moved to lane three, 1,062 s of it; back since): 2,895 s, the CPUs 94% busy over the
# whole run and 95-99% in every part: the machine is saturated, so another order does not end
# sooner, less work does (tests/ansible_plugins/callback/module_bytecode.py: less CPU per task).
# CI run 45 (this layout, with that callback): 2,558 s, lanes 2,325, 2,494 and 523 s.
# (The three scenarios side by side were tried, CI run 33: the cluster reached its second converge
# 27 min in against 18.5, a slower longest lane than the upgrade's ~10 min alone at the end.)
# The single-host suite runs in the docker scenario (Debian 12), with the checks that rerun the
# roles' playbooks; Debian 13 under nspawn converges in the upgrade scenario (one host) and the
# cluster scenario (three). The nspawn single-host scenario (`make molecule`) repeats the docker
# scenario's work on Debian 13: on demand, for CI's time.
TEST_PARTS := test-app,@test-testbed-hosts,molecule-cluster+test-testbed-hosts,test-testbed-roles,molecule-docker,@upgrade-previous,molecule-upgrade+@test-testbed-hosts,upgrade-previous,test-testbed-ca,test-testbed-local,lint
test: venv artifacts ## everything CI runs in three lanes (the app's suite, the cluster scenario; the test-host tool's checks, the role runs on test hosts, the docker then the upgrade scenario; lint, the upgrade's previous release kept, the pki role's CA steps, the test bed's other checks), closing with each part's seconds and how busy the CPUs were (tools/timed-parts)
	tools/timed-parts $(TEST_PARTS)

demo: venv artifacts ## deploy the whole stack into the local demo host and say where it is
	testbed/host up $(DEMO_HOST) $(DEMO_IP)
	ansible-playbook -i inventory/local/hosts.yml testbed/prepare-offline.yml
	ansible-playbook -i inventory/local/hosts.yml playbooks/site.yml
	@# the private CA where the user who ran make demo can read it (.secrets/ is root's), and how to trust it
	@install -m 0644 inventory/local/.secrets/pki/ca.crt $(DEMO_CA)
	@if [ -n "$${SUDO_USER:-}" ]; then chown "$$SUDO_USER" $(DEMO_CA); fi
	@tools/demo-trust $(abspath $(DEMO_CA)) https://$(DEMO_IP):8000

demo-down: ## remove the local demo host
	testbed/host down $(DEMO_HOST)

smoke: venv ## smoke checks (testinfra + synthetic events end to end) against INVENTORY=...
	pytest -c tests/pytest.ini --hosts=ansible://footprint --ansible-inventory=$(INVENTORY) -m "not destructive" tests

backup: venv ## back up INVENTORY=... now: Kafka's offsets, PostgreSQL, ClickHouse, the secrets encrypted (PASSPHRASE_FILE=...)
	ansible-playbook -i $(INVENTORY) playbooks/backup.yml $(if $(PASSPHRASE_FILE),-e footprint_backup_passphrase_file=$(abspath $(PASSPHRASE_FILE))) $(EXTRA)

restore: venv ## restore INVENTORY=... from its newest backup set (EXTRA="-e footprint_restore_set=... -e footprint_restore_force=true")
	ansible-playbook -i $(INVENTORY) playbooks/restore.yml $(if $(PASSPHRASE_FILE),-e footprint_backup_passphrase_file=$(abspath $(PASSPHRASE_FILE))) $(EXTRA)

upgrade: venv ## upgrade INVENTORY=... to the versions it asks for, one host at a time (EXTRA="-e kafka_finalize_metadata_version=true")
	ansible-playbook -i $(INVENTORY) playbooks/upgrade.yml $(EXTRA)

rotate-certs: venv ## re-issue every host certificate now, one host at a time (STEP=trust-new|sign-with-new|drop-old replaces the CA)
	ansible-playbook -i $(INVENTORY) playbooks/rotate-certs.yml $(if $(STEP),-e pki_ca_rotation=$(STEP)) $(EXTRA)

docs: venv ## regenerate the variable tables in the role READMEs from meta/argument_specs.yml
	$(PY) tools/role-docs
