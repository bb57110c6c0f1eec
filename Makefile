# The two commands of the README: `make demo` and `make test`.
# Both install what they need on a fresh Debian/Ubuntu machine when run as root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the sandbox and the example pipeline need.
APT_PACKAGES := podman runc debootstrap iptables iproute2 bwa samtools bcftools busybox-static
# The tests also render the documentation site in a real headless browser.
TEST_APT_PACKAGES := $(APT_PACKAGES) chromium

# The sandbox (moto + podman): `make demo` runs a pipeline from workflows/ on it.
SANDBOX := $(BIN)/python -m snakemake_executor_plugin_awsbatch.sandbox
# The example pipeline; `make demo DEMO_WORKFLOW=workflows/demo` runs the small smoke test,
# `make demo DEMO_ARGS=--forceall` runs every job again.
DEMO_WORKFLOW ?= workflows/variant-calling
DEMO_ARGS ?=

# checkov pins many dependencies: its own virtualenv keeps them out of .venv.
CHECKOV_VENV := .venv-checkov
# The newest releases our ranges allow, without the lock (`make test-latest`).
LATEST_VENV := .venv-latest

# Exact versions with hashes, made by pip-compile (pip-tools, in .venv) with the machine's
# own pip configuration; no index URL is written into them (docs/development.md).
DEV_LOCK     := requirements/dev.txt
CHECKOV_LOCK := requirements/checkov.txt
JOB_LOCK     := containers/requirements.txt
PIP_COMPILE  := $(BIN)/pip-compile --quiet --generate-hashes --no-emit-index-url \
	--no-emit-find-links --strip-extras
# The locks are made for this Python (the job image's, Debian 12's).
LOCK_PYTHON  := 3.11

.PHONY: demo test lint lint-cfn checkov-venv system-deps test-system-deps venv clean \
	sandbox-image sandbox-down docs docs-serve docs-reference apt-install python-version \
	lock lock-upgrade test-latest

venv: $(VENV)/.installed

# The locked versions, checked against their hashes, then this plugin itself (editable,
# built by the locked hatchling).
$(VENV)/.installed: $(DEV_LOCK) pyproject.toml | python-version
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

python-version:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(LOCK_PYTHON)".split("."))))' \
		|| { echo "the locks are for Python $(LOCK_PYTHON), $(PYTHON) is $$($(PYTHON) --version 2>&1 | cut -d' ' -f2): run make PYTHON=python$(LOCK_PYTHON) ..." >&2; exit 1; }

# Resolves the locks again after a change of pyproject.toml or an .in file, keeping every
# version that still fits; `make lock-upgrade` moves everything to the newest allowed.
lock: venv
	$(PIP_COMPILE) $(LOCK_ARGS) --allow-unsafe --extra test -o $(DEV_LOCK) pyproject.toml requirements/tools.in
	$(PIP_COMPILE) $(LOCK_ARGS) -o $(JOB_LOCK) containers/requirements.in
	$(PIP_COMPILE) $(LOCK_ARGS) --allow-unsafe -o $(CHECKOV_LOCK) requirements/checkov.in
	$(BIN)/python tools/check_job_lock.py $(JOB_LOCK)

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

# Installs missing Debian packages when run as root; otherwise says what is missing.
system-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

test-system-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"

apt-install:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing -- install them with: sudo apt-get install$$missing" >&2; exit 1; \
	fi

LINTED := snakemake_executor_plugin_awsbatch snakemake_scheduler_plugin_awsbatch tests benchmarks \
	workflows tools

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

checkov-venv: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: $(CHECKOV_LOCK) | python-version
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --require-hashes -r $(CHECKOV_LOCK)
	touch $@

# cfn-lint checks nested outputs only for templates below the working directory.
lint-cfn: venv checkov-venv
	cd cloudformation && ../$(BIN)/cfn-lint *.yaml
	$(CHECKOV_VENV)/bin/checkov -d cloudformation --framework cloudformation --skip-download --quiet --compact

test: test-system-deps venv checkov-venv lint
	$(BIN)/pytest -ra

# The newest versions pyproject.toml's ranges allow (no lock) in a fresh virtualenv: the
# unit tests and one real job on the sandbox, whose job image gets the same versions.
# Not part of `make test` or CI: it finds the next release that breaks us.
test-latest: system-deps python-version
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/pip install --quiet -e '.[test]'
	$(LATEST_VENV)/bin/python tools/latest.py report
	$(LATEST_VENV)/bin/python tools/latest.py job-requirements $(JOB_LOCK) > $(LATEST_VENV)/job-requirements.txt
	SNAKEMAKE_AWSBATCH_SANDBOX_REQUIREMENTS=$(CURDIR)/$(LATEST_VENV)/job-requirements.txt \
		$(LATEST_VENV)/bin/pytest -ra -p no:cacheprovider tests/unit tests/e2e/test_pipeline.py

# The documentation site (mkdocs.yml, docs/), built strictly into site/ as the tests do.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# docs/reference.md from the code (settings, resources, the stack's parameters and outputs).
docs-reference: venv
	$(BIN)/python tools/docs_reference.py

# Starts the sandbox (building its job image the first time, about 2 minutes), runs
# $(DEMO_WORKFLOW) with the awsbatch profile (results land in its results/), stops the sandbox.
demo: system-deps venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(SANDBOX) run -- workflows/demo/run_demo.sh $(DEMO_WORKFLOW) $(DEMO_ARGS)

# Builds the sandbox's job image ahead of time (CI caches podman's image store).
sandbox-image: system-deps venv
	$(SANDBOX) build-image

# Stops a sandbox left running by `snakemake-awsbatch-sandbox up` in this directory.
sandbox-down: venv
	$(SANDBOX) down

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(LATEST_VENV) .pytest_cache .mypy_cache .ruff_cache
