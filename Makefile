# opendove.mailserver: `make demo` runs a mail server in a local container; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SCENARIOS ?= rspamd pair

.PHONY: help venv engine images lint unit sanity molecule test demo demo-clean bench bench-storm chaos clean

help:
	@echo "make demo   - a mail server for the example inventory in a local container (mx1.example.test)"
	@echo "make test   - lint, unit tests, sanity and every Molecule scenario that can run here"
	@echo "make sanity - ansible-test sanity (no Docker) on a copy of the tracked files"

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

engine:
	scripts/docker-engine.sh

images: engine
	scripts/debian-image.sh trixie
	scripts/debian-image.sh bookworm

lint: venv
	ansible-lint --profile production
	antsibull-changelog lint

# Every core; each test file on one worker, so that its module fixtures run once.
unit: venv
	pytest -q -n auto --dist loadfile tests/unit

# ansible-test sanity in its own virtual environments, on a copy of the tracked files under .cache/sanity/.
sanity: venv
	scripts/sanity.sh

molecule: venv images
	scripts/molecule-test.sh $(SCENARIOS)

test: lint unit sanity molecule

demo: venv engine
	scripts/debian-image.sh trixie
	scripts/demo.sh

# Re-run cost for 2 and for 200 domains, against the demo container (run `make demo` first).
bench: venv
	python scripts/bench_rerun.py 2 200

# AUTH storm against the demo container: inbound latency idle and during 20 clients' wrong passwords, submission rates.
bench-storm: venv
	python scripts/bench_storm.py

# kill -9 under load against a converged Molecule scenario (molecule converge -s $(SCENARIO) first).
SCENARIO ?= pair
HOSTS ?= $(SCENARIO)-mx13
RUNS ?= 1
chaos: venv
	python scripts/chaos.py --scenario $(SCENARIO) $(addprefix --host ,$(HOSTS)) --runs $(RUNS)

demo-clean:
	-docker rm -f mx1.example.test
	rm -rf demo/.state

clean: demo-clean
	rm -rf $(VENV) .cache
