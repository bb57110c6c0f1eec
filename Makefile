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

.PHONY: demo test lint lint-cfn checkov-venv system-deps test-system-deps venv clean \
	sandbox-image sandbox-down docs docs-serve docs-reference apt-install

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

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

lint: venv
	$(BIN)/ruff check snakemake_executor_plugin_awsbatch tests benchmarks workflows tools
	$(BIN)/ruff format --check snakemake_executor_plugin_awsbatch tests benchmarks workflows tools
	$(BIN)/mypy

checkov-venv: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: Makefile
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.3.30'
	touch $@

# cfn-lint checks nested outputs only for templates below the working directory.
lint-cfn: venv checkov-venv
	cd cloudformation && ../$(BIN)/cfn-lint *.yaml
	$(CHECKOV_VENV)/bin/checkov -d cloudformation --framework cloudformation --skip-download --quiet --compact

test: test-system-deps venv checkov-venv lint
	$(BIN)/pytest -ra

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
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
