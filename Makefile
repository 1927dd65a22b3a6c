# forcebind — every target is phony; `make check` is what CI runs (through `make test`).
GO            ?= go
BIN           := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
STATICCHECK   := $(BIN)/staticcheck-$(STATICCHECK_VERSION)
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X main.version=$(VERSION)
FUZZTIME      ?= 30s
BENCHTIME     ?= 1s

.PHONY: all test check fmt-check vet staticcheck race build run demo bench fuzz clean

all: check build

## test: everything CI checks (gofmt, go vet, staticcheck, race tests incl. fuzz seed corpora)
test: check

check: fmt-check vet staticcheck race

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck is installed into ./bin at a pinned version, so a clean clone needs only Go.
staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@mv $(BIN)/staticcheck $@

race:
	$(GO) test -race -count=1 ./...

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/forcebind .

## demo: the whole thing in one process against a fake Slack and a fake Salesforce; no credentials
demo:
	$(GO) run -ldflags '$(LDFLAGS)' . demo

## run: the daemon, configured from the environment (see README.md)
run: build
	$(BIN)/forcebind run

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# fuzz runs each fuzz target for FUZZTIME (go test -fuzz takes one target per run).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf $(BIN)
