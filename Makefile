# rayflow: the two commands that matter are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DURATION ?=

.PHONY: venv run prerequisites test lint unit bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

## run: install, then run the word count on an embedded Ray (Ctrl-C or DURATION=30s stops it)
run: venv
	$(BIN)/rayflow run examples/wordcount.yaml $(if $(DURATION),--duration $(DURATION))

## lint: ruff check and format check
lint: venv
	$(BIN)/ruff check rayflow tests examples benchmarks scripts
	$(BIN)/ruff format --check rayflow tests examples benchmarks scripts

## unit: the tests that need no Ray (seconds)
unit: venv
	$(BIN)/pytest -m "not ray" --doctest-modules rayflow tests

## prerequisites: check what `make test` needs on the machine and does not install (Go, a JDK,
##                Maven, ...; README's "Two commands"): one message naming each one missing
prerequisites:
	@PYTHON="$(PYTHON)" bash scripts/check-prerequisites.sh

## test: check the prerequisites, install everything, lint, and run every test (doctests, unit,
##       real Ray, Chromium, helm, Kafka, Redis, YARN, a Kubernetes API server)
test: prerequisites
	$(MAKE) --no-print-directory lint
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-helm.sh >/dev/null
	bash scripts/ensure-redis.sh
	bash scripts/ensure-promtool.sh
	$(BIN)/python scripts/kafka_broker.py jars >/dev/null
	$(BIN)/python scripts/yarn_cluster.py jars >/dev/null
	bash scripts/ensure-etcd.sh
	bash scripts/ensure-kube-apiserver.sh >/dev/null
	$(BIN)/pytest --doctest-modules --durations=15 rayflow tests

## bench: the word count benchmark against the single-process baseline and Bytewax
bench: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.wordcount

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
