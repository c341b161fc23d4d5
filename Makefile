# batten's front door. `make help` lists the targets.
.DEFAULT_GOAL := help
PYTHON ?= python
export CARGO_TERM_COLOR ?= never

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build-dev
build-dev: ## Build the extension in place (debug) into the current environment
	maturin develop -q

.PHONY: build-prod
build-prod: ## Build the extension in place (release) into the current environment
	maturin develop -q --release

.PHONY: format
format: ## Format Rust and Python code
	cargo fmt
	$(PYTHON) -m ruff format python tests examples
	$(PYTHON) -m ruff check --fix python tests examples

.PHONY: lint-rust
lint-rust: ## cargo fmt --check and clippy -D warnings
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --no-default-features --all-targets -- -D warnings

.PHONY: lint-python
lint-python: ## ruff check, ruff format --check, import layers, mypy, stubtest of the native module
	$(PYTHON) -m ruff check python tests examples
	$(PYTHON) -m ruff format --check python tests examples
	PYTHONPATH=python$${PYTHONPATH:+:$$PYTHONPATH} lint-imports
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest batten._core --allowlist stubtest-allowlist.txt

.PHONY: lint
lint: lint-rust lint-python ## All lints

.PHONY: test-rust
test-rust: ## The pure-Rust engine's and stores' tests (no Python needed; starts a redis-server if installed)
	bash tests/cargo_test.sh

.PHONY: test-python
test-python: ## The pytest suite (slow soak tests included)
	$(PYTHON) -m pytest -q tests

.PHONY: test
test: test-rust test-python ## Every test: cargo test, then pytest

.PHONY: bench
bench: ## Benchmarks vs yardsticks and peers (LangGraph, jaf-py, DBOS, Prefect); rewrites BENCHMARKS.md (needs .[bench]; ~30 min, run on a quiet machine)
	$(PYTHON) tests/benchmarks/run.py

.PHONY: bench-quick
bench-quick: ## Every benchmark workload at small sizes, to check they run (< 2 min); writes nothing
	$(PYTHON) tests/benchmarks/run.py --quick

.PHONY: bench-review
bench-review: ## examples/code_review on idlelib (125 files): batten run vs plain asyncio (needs .[examples])
	$(PYTHON) tests/benchmarks/code_review.py

.PHONY: all
all: lint test ## Lint and test
