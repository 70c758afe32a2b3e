# dynworkers — see README.md. `make help` lists the targets.

GO            ?= go
BIN           := bin
PLUGIN_BIN    := $(BIN)/plugins
CONFIG        ?= configs/dynworkers.hcl
# How long make fuzz runs each fuzz target.
FUZZTIME      ?= 60s
# Plugin binaries: every first-party plugin and every example with a main package.
PLUGIN_DIRS   := $(sort $(dir $(wildcard plugins/*/main.go examples/*/main.go)))
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X github.com/dynworkers/dynworkers/host/internal/cli.Version=$(VERSION)
# Plugins are stripped: the host hashes every plugin binary (sha256) at each
# scan of plugin_dir and copies it once into its exec directory (host.exec_dir;
# launches then run the verified copy without hashing), so a smaller binary
# scans and starts first faster and takes less disk and page cache.
# Panics still print full stack traces (the pclntab stays).
PLUGIN_FLAGS  := -trimpath -ldflags "-s -w"

# Code generators, pinned. `make generate` installs them into bin/tools.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
TOOLS := $(abspath $(BIN)/tools)
PROTOS := $(sort $(wildcard internal/wire/proto/*.proto))

.PHONY: all build run test test-short fuzz fuzz-smoke bench generate lint help clean tools

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the host to bin/dynworkers and every plugin and example plugin to bin/plugins/
	@mkdir -p $(PLUGIN_BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/dynworkers ./host/cmd/dynworkers
	@for d in $(PLUGIN_DIRS); do \
		n=$$(basename $$d); echo "$(GO) build $(PLUGIN_FLAGS) -o $(PLUGIN_BIN)/$$n ./$$d"; \
		$(GO) build $(PLUGIN_FLAGS) -o $(PLUGIN_BIN)/$$n ./$$d || exit 1; \
	done
	@chmod go-w $(BIN) $(PLUGIN_BIN) $(PLUGIN_BIN)/* # the host refuses plugin files others can write (umask 002)

run: build ## build everything and run the host with configs/dynworkers.hcl (embedded default)
	$(BIN)/dynworkers serve -config $(CONFIG)

test: ## gofmt + vet, then all tests with -race (ensures a RabbitMQ broker, Chromium, promtool, python3-pika and an etcd binary first), then fuzz-smoke
	@$(MAKE) --no-print-directory lint
	@scripts/ensure-rabbitmq.sh
	@scripts/ensure-chromium.sh
	@scripts/ensure-promtool.sh
	@scripts/ensure-pika.sh
	@scripts/ensure-etcd.sh
	$(GO) test -race -count=1 -timeout 20m ./...
	@$(MAKE) --no-print-directory fuzz-smoke

fuzz: ## run every fuzz target for FUZZTIME (default 60s) each, one after the other
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

fuzz-smoke: ## run every fuzz target for 3s each (part of make test)
	GO=$(GO) scripts/fuzz.sh 3s

test-short: ## tests without the race detector, for a quick loop
	$(GO) test -count=1 ./...

bench: build ## run the benchmarks and write docs/benchmarks.md
	scripts/bench.sh

generate: tools ## regenerate protobuf code (protoc + pinned protoc-gen-go/-grpc)
	PATH="$(TOOLS):$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $(PROTOS)

tools:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*' -not -path './var/*')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) build ./...

clean: ## remove bin/ and var/
	rm -rf $(BIN) var
