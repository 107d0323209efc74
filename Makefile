# CineFlow: every target works on a fresh machine with only Go installed.
SHELL := /bin/bash
MODULES := $(shell go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')
BIN := $(CURDIR)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: build test test-short lint bench run sweep fmt

build: ## compile every binary into ./bin
	@mkdir -p $(BIN)
	cd services/notification && go build -o $(BIN)/ ./cmd/...
	cd jobs/sweeper && go build -o $(BIN)/ ./cmd/...
	cd pkg/devdb && go build -o $(BIN)/ ./cmd/...

test: ## every test of every module (fuzz seed corpora included)
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && go test $(GO_TEST_FLAGS) ./...); done

test-short: ## the fast inner loop
	@set -e; for m in $(MODULES); do (cd $$m && go test -short -count=1 ./...); done

lint: ## go vet on every module
	@set -e; for m in $(MODULES); do echo "== go vet $$m"; (cd $$m && go vet ./...); done

bench: ## benchmarks with figures (req/s, p50/p99, drain time, memory)
	cd services/notification && go test -run '^$$' -bench . -benchtime 3000x ./httpapi/

fmt:
	gofmt -w $(MODULES)
