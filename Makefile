# Two commands matter: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.lock.txt | cut -d' ' -f1)

.PHONY: install demo test lint format e2e bench messages clean

$(STAMP): requirements.lock.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (found %d.%d)" % sys.version_info[:2])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## demo: install, migrate, seed, start localstripe and serve the shop on http://127.0.0.1:8000/
demo: install
	$(PY) manage.py demo

## test: lint, migration check and the whole suite on PostgreSQL + Redis
test: install lint
	$(PY) tests/harness.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## messages: refresh the zh-hans catalog after changing translatable strings
messages: install
	$(PY) manage.py makemessages -l zh_Hans --ignore=.venv --ignore=tests
	$(PY) manage.py compilemessages --ignore=.venv

bench: install
	$(PY) tests/harness.py --bench

clean:
	rm -rf $(VENV) .cache db.sqlite3
