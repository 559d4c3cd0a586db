# porter-bundle build toolchain (GNU make).
#
#   make venv        create .venv and install the project with its dev tools
#   make gen         regenerate gen/ from proto/ (buf generate)
#   make check       everything CI runs: lint typecheck gen-check breaking test
#   make test        pytest on every core (PYTEST_ARGS=..., PYTEST_WORKERS=0: one process)
#   make run         start the server (RUN_ARGS=...)
#   make bench       run the benchmarks (BENCH_ARGS=...)
#   make fuzz        the hostile-client fuzzer on a server of its own (FUZZ_CASES=..., FUZZ_SEED=...)
#   make image       build the container images with podman (server and Porter operator agent)
#   make operator-sim run the Porter operator simulation against the built agent image
#
# Every tool (buf, protoc plugins, ruff, mypy, pytest) comes from the venv: its bin/ is put first on
# PATH for all recipes, which is also how buf finds the local plugins named in buf.gen.yaml.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV)/bin):$(PATH)
# Written once the venv is complete; rebuilt whenever pyproject.toml changes.
STAMP := $(VENV)/.installed

# Debian packages the tests need (container engine, busybox images, OCI registry).
# Installed only when missing (`make test-postgres` adds postgresql).
APT_PACKAGES ?= podman runc busybox-static docker-registry debootstrap curl

# The released API, which `make breaking` compares proto/ with.
API_SNAPSHOT ?= proto/released.binpb

PYTEST_ARGS ?=
RUN_ARGS ?=
BENCH_ARGS ?=
FUZZ_CASES ?= 20000
FUZZ_SEED ?= 1

# Python sources to lint (only the folders that exist yet).
LINT_DIRS := $(wildcard src tests bench)

# $(call apt-install,PACKAGES): install those Debian packages that are not installed yet, running
# `apt-get update` once first; nothing at all when all are there. Uses sudo when not root.
define apt-install
missing=(); \
for p in $(1); do \
  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p"); \
done; \
if (( $${#missing[@]} )); then \
  if [[ $$(id -u) -eq 0 ]]; then sudo=(); \
  elif command -v sudo >/dev/null; then sudo=(sudo); \
  else echo "error: need root or sudo to apt-get install: $${missing[*]}" >&2; exit 1; fi; \
  echo "apt-get install: $${missing[*]}"; \
  "$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
  "$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$${missing[@]}"; \
fi
endef

.PHONY: help
help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

# ---------------------------------------------------------------------------------------------
# Environment

.PHONY: venv system-deps
venv: $(STAMP)

# Debian's python3 lacks ensurepip (hence `python3 -m venv`) without the python3-venv package.
$(STAMP): pyproject.toml
	@python3 -c 'import ensurepip, venv' 2>/dev/null || { $(call apt-install,python3-venv); }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# kubectl (for `kubectl kustomize` of deploy/kubernetes): any kubectl on PATH will do (Debian's
# kubernetes-client conflicts with a kubectl package that is already installed).
system-deps:
	@$(call apt-install,$(APT_PACKAGES))
	@command -v kubectl >/dev/null || { $(call apt-install,kubernetes-client); }

# ---------------------------------------------------------------------------------------------
# Code generation: proto/ -> gen/ (committed). See buf.gen.yaml.

.PHONY: gen gen-check
gen: $(STAMP)
	buf generate
	@# The editable install only knows the gen/ packages that existed when it was made:
	@# after the first generation (or a new top-level package) refresh it, so `porter-bundle` runs.
	@pkgs=$$(cd gen 2>/dev/null && ls -d */ 2>/dev/null | tr -d / || true); \
	if [[ -n "$$pkgs" ]] && ! (cd / && $(abspath $(PY)) -c 'import importlib.util as u, sys; \
	    sys.exit(any(u.find_spec(p) is None for p in sys.argv[1:]))' $$pkgs); then \
	  echo "refreshing the editable install for gen/: $$pkgs"; \
	  $(PY) -m pip install -q --no-deps -e .; \
	fi

# Regenerates into a temporary folder and compares it with gen/ (extra, missing or changed files).
gen-check: $(STAMP)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	buf generate --output "$$tmp"; \
	mkdir -p gen "$$tmp/gen"; \
	if ! diff -r -q -x __pycache__ gen "$$tmp/gen"; then \
	  echo "error: gen/ is stale: run make gen" >&2; exit 1; \
	fi; \
	echo "gen/ is up to date"

# ---------------------------------------------------------------------------------------------
# Checks

.PHONY: check lint typecheck breaking test test-postgres
check: lint typecheck gen-check breaking test test-postgres

lint: $(STAMP)
	buf lint
	buf format --diff --exit-code
	ruff check $(LINT_DIRS)
	ruff format --check $(LINT_DIRS)

typecheck: $(STAMP)
	mypy

# Compares proto/ with the released API: the image in $(API_SNAPSHOT), committed when an API
# version is released. CI runs on main itself, so a branch comparison would always be empty; the
# snapshot makes every run check wire compatibility (FILE rules: no field, number, name, type or
# RPC of the released API may change or disappear). Additions are fine; `make api-snapshot`
# records them as released once they land.
# The workspace (proto/ and proto-legacy/) is built into one image first: compared directly with an
# image, buf checks it module by module and reports the other module's files as deleted
# (bufbuild/buf#3641). Image against image applies the FILE rules (buf's default) to every file.
breaking: $(STAMP)
	@if [[ ! -f $(API_SNAPSHOT) ]]; then echo "breaking: skipped: no released API snapshot yet"; exit 0; fi
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	buf build -o "$$tmp/current.binpb"; \
	echo "buf breaking (proto/ + proto-legacy/) --against $(API_SNAPSHOT)"; \
	buf breaking "$$tmp/current.binpb" --against $(API_SNAPSHOT)

.PHONY: api-snapshot
api-snapshot: $(STAMP)
	buf build -o $(API_SNAPSHOT)

# pytest-xdist workers: one per core (`auto`); PYTEST_WORKERS=0 runs the tests in one process.
# --dist loadgroup keeps the Podman tests on one worker (one engine, each image built once).
PYTEST_WORKERS ?= auto
test: $(STAMP) system-deps
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The store-backed tests again, on PostgreSQL: Debian's cluster, started if needed, reached over
# its Unix socket with a superuser role named after the current user (peer authentication).
PG_TEST_URL ?= postgresql+psycopg:///postgres?host=/var/run/postgresql
# $(call pg-ready): Debian's PostgreSQL installed and started, with a superuser role named after
# the current user (what PG_TEST_URL reaches).
define pg-ready
$(call apt-install,postgresql); \
read -r ver cluster _ < <(pg_lsclusters -h | head -n 1); \
pg_ctlcluster "$$ver" "$$cluster" status >/dev/null 2>&1 || pg_ctlcluster "$$ver" "$$cluster" start; \
me=$$(id -un); \
runuser -u postgres -- psql -tAc "select 1 from pg_roles where rolname = '$$me'" | grep -q 1 \
  || runuser -u postgres -- createuser --superuser "$$me"
endef

test-postgres: $(STAMP)
	@$(call pg-ready)
	PORTER_BUNDLE_TEST_POSTGRES='$(PG_TEST_URL)' $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup tests/api tests/service tests/store \
	  tests/observability/test_health_database.py $(PYTEST_ARGS)

# ---------------------------------------------------------------------------------------------
# Running

.PHONY: run bench fuzz
run: $(STAMP)
	$(VENV)/bin/porter-bundle serve $(RUN_ARGS)

# The PostgreSQL figures (bench/postgres.py) use the same server as `make test-postgres`.
bench: $(STAMP)
	@$(call pg-ready)
	PORTER_BUNDLE_BENCH_POSTGRES='$(PG_TEST_URL)' PYTHONPATH="$(CURDIR):$(CURDIR)/src:$(CURDIR)/gen$${PYTHONPATH:+:$$PYTHONPATH}" \
	  $(PY) -m bench $(BENCH_ARGS)

# Fails (exit 1) listing each case that got UNKNOWN, INTERNAL, RESOURCE_EXHAUSTED or hung;
# one case replays alone: .venv/bin/python -m tests.fuzz --seed S --first N --cases 1
fuzz: $(STAMP)
	$(PY) -m tests.fuzz --cases $(FUZZ_CASES) --seed $(FUZZ_SEED)

# ---------------------------------------------------------------------------------------------
# Container images (Containerfile; tools/image.sh says how the base is found or built).
#
# IMAGE_STORE: a podman store of the project's own, with the settings these machines need
# (tests/engine.py says why each is there). Empty: podman's own configuration and store.
IMAGE_STORE ?= $(CURDIR)/build/podman
IMAGE ?= localhost/porter-bundle:dev
AGENT_IMAGE ?= localhost/porter-bundle-agent:dev
ifneq ($(strip $(IMAGE_STORE)),)
export CONTAINERS_CONF := $(IMAGE_STORE)/containers.conf
export CONTAINERS_STORAGE_CONF := $(IMAGE_STORE)/storage.conf
endif
export IMAGE AGENT_IMAGE

.PHONY: image image-store operator-sim
image-store:
	@if [[ -n "$(strip $(IMAGE_STORE))" ]]; then \
	  $(PY) -c 'import sys; from tests.engine import write_store_config; write_store_config(sys.argv[1], "overlay")' \
	    "$(IMAGE_STORE)"; \
	fi

image: $(STAMP) image-store
	@$(call apt-install,podman runc debootstrap)
	tools/image.sh

# The Porter operator's Jobs, played with podman against a porter-bundle server on this host.
operator-sim: image
	$(PY) -m pytest -q -p no:cacheprovider tests/operator_sim $(PYTEST_ARGS)

# ---------------------------------------------------------------------------------------------

.PHONY: clean distclean
# Caches and build output (gen/ is committed and stays).
clean:
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache *.egg-info src/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# clean, and the venv too.
distclean: clean
	rm -rf $(VENV)
