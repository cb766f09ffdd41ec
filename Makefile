# The project's interface. `make test` and `make up` do every set-up step on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export GEOINGEST_CACHE ?= $(HOME)/.cache/geoingest
export PYTHONDONTWRITEBYTECODE := 1
PYTEST_ARGS ?=

.PHONY: help deps system-deps venv kafka consul test test-fast test-slow test-faults \
        bench-edge bench-mirror bench-central bench-stack up demo clean \
        compose-gen compose-up tf-fmt

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system-deps:  ## Debian packages (prometheus, kcat, wrk, hey, chromium) when missing
	@bash scripts/install-system-deps.sh

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed  ## the virtualenv with the project and its test tools

kafka: venv  ## fetch Apache Kafka's jars from Maven Central into $(GEOINGEST_CACHE)
	$(BIN)/geo-kafka fetch >/dev/null

consul: ## a consul binary: on PATH, cached, or built from the Go module proxy (1.14.11, see harness/consul_build)
	@bash harness/consul_build/build.sh >/dev/null

deps: system-deps venv kafka consul

test: deps  ## the whole suite, slow fault and load tests included (what CI runs)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: deps  ## everything but the slow fault and load tests
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: deps  ## only the slow fault and load tests
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

test-faults: deps  ## the fault suite on the whole local stack
	$(BIN)/pytest -m faults -s $(PYTEST_ARGS)

bench-edge: deps  ## edge against its peers (a Go reference, Benthos; built once) and Kafka's own producer rate
	$(BIN)/python -m bench.edge

bench-mirror: deps  ## mirror throughput and latency against MirrorMaker 2: loopback, the us WAN link, the same link at 1 Gbit/s
	$(BIN)/python -m bench.mirror
	$(BIN)/python -m bench.mirror --wan us
	$(BIN)/python -m bench.mirror --wan us --wan-mbit 1000

bench-central: deps  ## loader rate into chdb and dashboard query latency at 10M rows
	$(BIN)/python -m bench.central

fuzz-edge: deps  ## a bounded schemathesis run against a live edge (last line: JSON summary)
	$(BIN)/python -m bench.fuzz --examples 100

bench-stack: deps  ## the whole stack under load and a soak (BROKERS=3: three brokers per cluster; WAN=off: loopback links)
	$(BIN)/python -m bench.stack $(if $(BROKERS),--brokers $(BROKERS)) $(if $(WAN),--wan $(WAN)) $(BENCH_ARGS)

up: deps  ## the local geo stack: 3 Kafka clusters, Consul, 4 edges, mirror, central, geo router (BROKERS=3: three brokers per cluster; WAN=off: loopback links)
	$(BIN)/python -m geostack.up $(if $(BROKERS),--brokers $(BROKERS)) $(if $(WAN),--wan $(WAN)) $(UP_ARGS)

demo: deps  ## the local stack, simulated clients, a regional failover, a JSON summary
	$(BIN)/python -m geostack.demo $(if $(WAN),--wan $(WAN))

compose-gen: venv  ## regenerate docker-compose.geo.yml and the Prometheus configs from regions.yaml
	$(BIN)/python scripts/gen_compose.py

compose-up: compose-gen  ## the geo stack in containers (needs a Docker engine)
	docker compose -f docker-compose.geo.yml up --build -d

tf-fmt:  ## check Terraform formatting
	terraform fmt -check -recursive terraform

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
