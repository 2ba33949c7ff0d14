# Two commands matter: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Two locks with hashes, written by `make lock` (uv) from pyproject.toml: requirements.lock.txt is what runs the shop
# (the production image installs it alone), requirements-dev.lock.txt adds the tools and the test suite (.venv).
LOCK := requirements.lock.txt
DEV_LOCK := requirements-dev.lock.txt
STAMP := $(VENV)/.installed-$(shell cksum $(DEV_LOCK) | cut -d' ' -f1)
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used); the font
# draws the Simplified Chinese pages in their screenshots.
E2E_APT := apt-get install -y chromium fonts-wqy-microhei
# axe-core (accessibility checks in the browser tests) is one vendored file, never served by the shop;
# Lighthouse is installed from npm into .cache, for `make lighthouse` only.
AXE_FILE := tests/e2e/vendor/axe.min.js
AXE_VERSION := 4.10.3
LIGHTHOUSE_DIR := .cache/lighthouse
LIGHTHOUSE_VERSION := 12.2.3

.PHONY: install lock demo test lint format e2e chromium lighthouse bench risk-figures messages clean

$(STAMP): $(DEV_LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (found %d.%d)" % sys.version_info[:2])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## lock: write both locks from pyproject.toml, keeping every pin that still fits; move one package on with
## `make lock UPGRADE="--upgrade-package stripe"` (or UPGRADE=--upgrade for all), then `make install`
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 --custom-compile-command "make lock" --quiet
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra s3 --extra dev $(LOCK_FLAGS) $(UPGRADE) -o $(DEV_LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml --extra s3 -c $(DEV_LOCK) $(LOCK_FLAGS) -o $(LOCK)

# storefront.settings is production only (DEBUG off, every secret required); the demo and the tools below
# use the demo's settings: DEBUG, development secrets, the SQLite file, Celery eager.
DEMO_SETTINGS := DJANGO_SETTINGS_MODULE=storefront.settings_demo

## demo: install, migrate, seed, start localstripe and serve the shop on http://127.0.0.1:8000/
demo: install
	$(DEMO_SETTINGS) $(PY) manage.py demo

## test: lint, migration check, the whole suite on PostgreSQL + Redis, then the purchase smoke suite on the
## demo's own settings (SQLite, Celery eager, localstripe, the fake PayPal; tests/smoke_sqlite)
test: install lint $(AXE_FILE)
	$(PY) tests/harness.py

## e2e: only the browser tests (tests/e2e), installing Debian's Chromium and a CJK font first when missing;
## every shopper page at 1280 and 390 px in both languages goes to .cache/e2e/pages/, with .cache/e2e/contact-sheet.png
e2e: install chromium $(AXE_FILE)
	$(PY) tests/harness.py tests/e2e

## lighthouse: Lighthouse's performance and accessibility scores of home, product, checkout and order (at least 95)
lighthouse: install chromium $(AXE_FILE)
	test -x $(LIGHTHOUSE_DIR)/node_modules/.bin/lighthouse || \
		npm install --prefix $(LIGHTHOUSE_DIR) --no-audit --no-fund --save-exact lighthouse@$(LIGHTHOUSE_VERSION)
	LIGHTHOUSE=$(CURDIR)/$(LIGHTHOUSE_DIR)/node_modules/.bin/lighthouse $(PY) tests/harness.py tests/e2e/test_lighthouse.py; \
		status=$$?; cat .cache/e2e/lighthouse.txt 2>/dev/null; exit $$status

$(AXE_FILE):
	mkdir -p $(dir $@) .cache/axe-core
	cd .cache/axe-core && npm pack --silent axe-core@$(AXE_VERSION) && tar xzf axe-core-$(AXE_VERSION).tgz
	cp .cache/axe-core/package/axe.min.js $@

chromium:
	@have_chromium() { if [ -n "$$CHROMIUM_PATH" ]; then [ -x "$$CHROMIUM_PATH" ]; \
		else [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; fi; }; \
	have_cjk_font() { fc-list :lang=zh 2>/dev/null | grep -q .; }; \
	if have_chromium && have_cjk_font; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "[make e2e] installing Chromium and a Chinese font: $(E2E_APT)"; \
		apt-get update -qq && $(E2E_APT); \
	elif have_chromium; then \
		echo "[make e2e] no Chinese font: the zh-hans screenshots will show boxes. Install one with: sudo $(E2E_APT)"; \
	else \
		echo "[make e2e] Chromium is missing. Install it with: sudo $(E2E_APT)"; exit 1; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(DEMO_SETTINGS) $(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## messages: refresh the zh-hans catalog after changing translatable strings
messages: install
	$(DEMO_SETTINGS) $(PY) manage.py makemessages -l zh_Hans --ignore=.venv --ignore=tests
	$(DEMO_SETTINGS) $(PY) manage.py compilemessages --ignore=.venv

bench: install
	$(PY) tests/harness.py --bench

## risk-figures: the risk engine on two simulated months (11,000 orders each, shipped defaults), and the
## backtest's prediction of a proposed configuration against its live replay, and the learnt model on a month it
## never saw (trained on seed 1, deciding seed 2), and the ceiling: what a learner given the true labels catches
## on the same signals within the review budget; about 15 minutes per month of 11,000 orders
risk-figures: install
	$(PY) tests/load/risk_figures.py --seeds 1 2 --orders 11000
	$(PY) tests/load/risk_figures.py --predict --seeds 1 --orders 3000 --fraud-share 0.1
	$(PY) tests/load/risk_figures.py --model --seeds 1 2 --orders 3000 --fraud-share 0.08
	$(PY) tests/load/risk_figures.py --ceiling --seeds 1 2 --orders 6000 --fraud-share 0.15

clean:
	rm -rf $(VENV) .cache db.sqlite3
