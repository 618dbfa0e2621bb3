# The README's commands. Each one bootstraps what it needs on a fresh machine:
# a Python venv with mbd installed, and the Kafka/Spark jars fetched by Maven.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
JARS_STAMP := .cache/jars/.pom-sha256
POMS := infra/pom.xml infra/broker-jars/pom.xml infra/spark-jars/pom.xml infra/maven-settings.xml
DATA ?= data

.PHONY: run test lint bench soak jars tools browser loadgen clean stop

# Java and Maven come with this kind of machine; install them from Debian if a machine lacks them.
tools:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java 17 and Maven from Debian"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null; }

# The dashboard test drives Debian's headless Chromium through Selenium (nothing downloaded
# from a browser vendor's host): install both from Debian if this machine lacks them.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver from Debian"; \
	  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }

# bench/ingest.py loads the gateway with wrk, a C load generator that leaves the two cores to
# the gateway and the broker: install it from Debian if this machine lacks it.
loadgen:
	@command -v wrk >/dev/null || { \
	  echo "installing wrk from Debian"; \
	  apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(JARS_STAMP): $(INSTALLED) $(POMS) | tools
	$(BIN)/mbd setup

jars: $(JARS_STAMP)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(INSTALLED) $(JARS_STAMP) lint | browser
	$(BIN)/pytest

run: $(INSTALLED) $(JARS_STAMP)
	$(BIN)/mbd up --data-dir $(DATA)

stop: $(INSTALLED)
	$(BIN)/mbd broker stop --data-dir $(DATA)/kafka

# One at a time, nothing else busy: on two cores benchmarks disturb each other.
# bench/suite.py runs each in turn (the soak last) and writes bench/results/<name>.json,
# <name>.log and README.md, a table of every benchmark's figures against its goal.
bench: $(INSTALLED) $(JARS_STAMP) | loadgen
	$(BIN)/python -m bench.suite

# `mbd up` with 500 simulated phones for 10 minutes: memory per service, restarts, lag.
soak: $(INSTALLED) $(JARS_STAMP)
	$(BIN)/python -m bench.suite --only soak

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .mypy_cache
