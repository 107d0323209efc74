# CineFlow: every target works on a fresh machine with only Go installed.
SHELL := /bin/bash
MODULES := $(shell go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')
BIN := $(CURDIR)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 30m
# Stamped into every binary (main.version): the commit, "-dirty" with local changes.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Static binaries everywhere: FerretDB's SQLite (modernc.org/sqlite) is pure Go, so the
# development database builds without cgo too.
GO_BUILD := CGO_ENABLED=0 go build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/

.PHONY: help build run sweep test test-short lint bench fmt

build: ## compile every binary into ./bin (core, notification, sweeper, devstack, devdb)
	@mkdir -p $(BIN)
	cd services/core && $(GO_BUILD) ./cmd/...
	cd services/notification && $(GO_BUILD) ./cmd/...
	cd jobs/sweeper && $(GO_BUILD) ./cmd/...
	cd pkg/devdb && $(GO_BUILD) ./cmd/...

run: build ## the whole system on this machine: embedded database, services, a sweep every SWEEP_INTERVAL
	$(BIN)/devstack

sweep: build ## one sweep, then exit, against DB_URL (default: the database `make run` serves)
	$(BIN)/sweeper

test: ## every test of every module (fuzz seed corpora included)
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && go test $(GO_TEST_FLAGS) ./...); done

test-short: ## the fast inner loop
	@set -e; for m in $(MODULES); do (cd $$m && go test -short -count=1 ./...); done

lint: ## gofmt check and go vet on every module
	@unformatted=$$(gofmt -l $(MODULES)); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && go vet ./...); done

bench: ## benchmarks with figures (req/s, p50/p99, drain time, memory)
	cd services/notification && go test -run '^$$' -bench . -benchtime 3000x ./httpapi/
	cd jobs/sweeper && go test -run '^$$' -bench . -benchtime 1x ./...
	cd services/core && go test -run '^$$' -bench 'Movie' -benchtime 5000x ./cmd/core/
	cd services/core && go test -run '^$$' -bench 'BookingHTTP|Contention|CoreMemory' -benchtime 1x -timeout 30m ./cmd/core/

fmt: ## gofmt every module
	gofmt -w $(MODULES)

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-11s %s\n", $$1, $$2}'
