# Amphora — the two commands are `make demo` and `make test`; both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV_VERSION := 0.13.9
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
# Ape keeps its data (compiler caches, accounts) inside the project.
export APE_DATA_FOLDER ?= $(CURDIR)/.cache/ape
# The suite prints its slowest tests, so a run over time says where the time went.
PYTEST_ARGS ?= --durations=40

.PHONY: install postgres browser demo test docs bench lint lock clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --quiet --python $(VENV)/bin/python requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	@# `npm ci` installs exactly what the lock says and never rewrites it (`npm install`
	@# would add lock entries for other platforms' optional anvil binaries, leaving the
	@# tracked package-lock.json modified). The lock lists every platform's entry.
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The relayer's shared-outbox tests start a throwaway PostgreSQL server; they never
# skip, so a machine without one gets Debian's package (the server binaries live in
# /usr/lib/postgresql/<version>/bin, outside PATH). Nothing happens when it is there.
postgres:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	fi

# The page tests drive Debian's Chromium through Playwright (never `playwright install`,
# which downloads a browser); the Chinese pages need the Noto CJK fonts. Nothing
# happens when both are there.
browser:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk; \
	fi

demo: install
	ape run demo

# The documentation site (docs/, mkdocs.yml) into site/; --strict turns every
# warning (a broken link or anchor, a page missing from the nav) into a failure.
docs: install
	mkdocs build --strict

test: install postgres browser docs
	ape test $(PYTEST_ARGS)

bench: install
	python bench/gas.py
	python bench/relayer.py
	python bench/indexer.py
	python bench/pages.py

lint: install
	ruff check amphora api storage indexer scripts tests bench
	mypy api amphora storage indexer

# Re-resolve the pinned environment after editing pyproject.toml.
lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf .build .cache .pytest_cache .hypothesis site
