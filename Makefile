# CineFlow: every target works on a fresh machine with only Go installed.
SHELL := /bin/bash
MODULES := $(shell go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')
# Modules outside the workspace: the chart's tests (Helm, a real API server) and the tool
# modules they build (Kubernetes, skaffold), kept apart so their dependencies never mix with
# the services'. Always run with GOWORK=off.
TOOL_MODULES := charts/test k8s/skaffold k8s/local
# Debian packages the tests run for real: etcd (store of the API server), Prometheus and its
# Pushgateway (dashboard and alert queries). Node.js and npm (the chart README's parameters
# tables, charts/readme.sh) come from Debian too, unless the machine already has npm.
DEBIAN_PACKAGES := etcd-server prometheus prometheus-pushgateway
NODE_PACKAGES := nodejs npm
BIN := $(CURDIR)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 30m
E2E_TIMEOUT ?= 60m
# Stamped into every binary (main.version): the commit, "-dirty" with local changes.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Static binaries everywhere: FerretDB's SQLite (modernc.org/sqlite) is pure Go, so the
# development database builds without cgo too.
GO_BUILD := CGO_ENABLED=0 go build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/

.PHONY: help build run sweep test test-short lint bench fmt deps k8s chart-readme e2e cluster cluster-down images tools

build: ## compile every binary into ./bin (core, notification, sweeper, devstack, devdb)
	@mkdir -p $(BIN)
	cd services/core && $(GO_BUILD) ./cmd/...
	cd services/notification && $(GO_BUILD) ./cmd/...
	cd jobs/sweeper && $(GO_BUILD) ./cmd/...
	cd pkg/devdb && $(GO_BUILD) ./cmd/...

run: build ## the whole system on this machine: embedded database, services, a sweep every SWEEP_INTERVAL
	$(BIN)/devstack

sweep: build ## one sweep, then exit, against DB_URL (default: the database `make run` serves), in development mode as `make run`
	@# The binaries default to APP_ENV=production; like devstack, use development unless APP_ENV is set (here or in .env).
	@if [ -z "$${APP_ENV}" ] && ! grep -qsE '^[[:space:]]*(export[[:space:]]+)?APP_ENV=[^[:space:]#]' .env; then export APP_ENV=development; fi; \
	$(BIN)/sweeper

test: deps ## every test of every module (fuzz seed corpora included), the chart on a real API server
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && go test $(GO_TEST_FLAGS) ./...); done
	@set -e; for m in $(TOOL_MODULES); do echo "== go test $$m (GOWORK=off)"; (cd $$m && GOWORK=off go test $(GO_TEST_FLAGS) ./...); done

test-short: ## the fast inner loop (no API server, no Prometheus, no end-to-end runs)
	@set -e; for m in $(MODULES); do (cd $$m && go test -short -count=1 ./...); done
	@set -e; for m in $(TOOL_MODULES); do (cd $$m && GOWORK=off go test -short -count=1 ./...); done

deps: ## install the Debian packages the tests need (etcd, Prometheus, Pushgateway; Node.js and npm unless the machine has npm) when missing
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing $(NODE_PACKAGES)"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "== apt-get install$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	else echo "note: not installed:$$missing (run as root: apt-get install$$missing); the tests that need them are skipped"; fi

lint: ## gofmt check, go vet on every module, actionlint on the GitHub workflows
	cd k8s/tools && GOWORK=off go build -o $(BIN)/actionlint github.com/rhysd/actionlint/cmd/actionlint
	$(BIN)/actionlint .github/workflows/*.yaml
	@unformatted=$$(gofmt -l $(MODULES) $(TOOL_MODULES)); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && go vet ./...); done
	@set -e; for m in $(TOOL_MODULES); do echo "== go vet $$m (GOWORK=off)"; (cd $$m && GOWORK=off go vet ./...); done

bench: ## benchmarks with figures (req/s, p50/p99, drain time, memory)
	-cd services/notification && go test -run '^$$' -bench . -benchtime 3000x ./httpapi/
	-cd services/notification && go test -v -run '^$$' -bench 'ListGrowth' -benchtime 1x -timeout 60m ./mongostore/
	-cd jobs/sweeper && go test -v -run '^$$' -bench . -benchtime 1x -timeout 30m ./...
	-cd services/core && go test -run '^$$' -bench 'FreeSeats|SeatMap' ./booking/
	-cd services/core && go test -run '^$$' -bench 'SignInLookup' -benchtime 200x ./mongostore/
	-cd services/core && go test -run '^$$' -bench 'Movie' -benchtime 5000x ./cmd/core/
	-cd services/core && go test -run '^$$' -bench 'BookingHTTP|Contention|CoreMemory' -benchtime 1x -timeout 30m ./cmd/core/
	-cd services/core && go test -v -run '^$$' -bench 'BookingGrowth|ExpiryStorm' -benchtime 1x -timeout 90m ./cmd/core/
	-cd services/core && go test -v -run '^$$' -bench 'OutboxOutage|OutboxRelayRound' -benchtime 1x -timeout 30m ./cmd/core/
	-cd services/core && go test -run '^$$' -bench 'ListPage' -benchtime 200x ./mongostore/
	-cd services/core && go test -run '^$$' -bench 'BookingSerial' -benchtime 1x ./cmd/core/
	-cd services/core && go test -v -run '^$$' -bench 'ListGrowth' -benchtime 1x -timeout 30m ./cmd/core/
	-cd pkg/devdb/cmd/devstack && go test -v -run '^$$' -bench 'BookingBesideSweep' -benchtime 1x -timeout 30m .
	-cd pkg/devdb && go test -run '^$$' -bench 'IDQueries' -benchtime 1x .

e2e: ## the whole system on a real single-node Kubernetes cluster (root; k8s/local), the user's story proven
	cd k8s/local && CINEFLOW_E2E=1 GOWORK=off go test -v -count=1 -timeout $(E2E_TIMEOUT) ./e2e/

cluster: ## try it: a local single-node cluster with the chart installed and the API reachable, until Ctrl-C (root)
	cd k8s/local && GOWORK=off go build -o $(BIN)/localcluster ./cmd/localcluster
	$(BIN)/localcluster up

cluster-down: ## stop what an interrupted `make cluster` or `make e2e` left running
	cd k8s/local && GOWORK=off go build -o $(BIN)/localcluster ./cmd/localcluster
	$(BIN)/localcluster down

tools: ## build the release tools (ko, actionlint) into ./bin from k8s/tools, a module of their own (GOWORK=off)
	@mkdir -p $(BIN)
	cd k8s/tools && GOWORK=off go build -o $(BIN)/ github.com/google/ko github.com/rhysd/actionlint/cmd/actionlint

images: tools ## the images with ko for linux/amd64 and linux/arm64: OCI layouts in dist/, or pushed with REGISTRY=<registry>/<owner>
	VERSION=$(VERSION) KO=$(BIN)/ko k8s/images.sh

k8s: ## render the chart into the plain manifests k8s/cineflow.yaml (for users without Helm)
	k8s/render.sh

chart-readme: ## regenerate the parameters tables of charts/cineflow/README.md from values.yaml (npm: bitnami's readme-generator-for-helm)
	charts/readme.sh

fmt: ## gofmt every module
	gofmt -w $(MODULES) $(TOOL_MODULES)

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'
