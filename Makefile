# The two commands of the README: `make demo` and `make test`.
# Both install what they need on a fresh Debian/Ubuntu machine when run as root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the sandbox and the example pipeline need.
APT_PACKAGES := podman runc debootstrap bwa samtools bcftools

.PHONY: demo test lint unit e2e system-deps venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Installs missing Debian packages when run as root; otherwise says what is missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing -- install them with: sudo apt-get install$$missing" >&2; exit 1; \
	fi

lint: venv
	$(BIN)/ruff check snakemake_executor_plugin_awsbatch tests benchmarks workflows
	$(BIN)/ruff format --check snakemake_executor_plugin_awsbatch tests benchmarks workflows
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/pytest -ra

demo: system-deps venv
	@echo "demo: not wired yet"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
