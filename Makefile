# pushgate: `make run` starts the gateway, `make test` installs what the
# tests need (when missing) and runs them all.

GO        ?= go
NODEWS    := server/testdata/nodews
FUZZTIME  ?= 10s
STATICCHECK_VERSION := v0.8.2

.PHONY: run test deps lint fuzz bench

run:
	$(GO) run ./cmd/gateway

test: deps lint
	$(GO) test -race ./...
	$(MAKE) fuzz

# deps installs the test tools that are missing: Node.js with npm (Debian
# packages) for the ws interop client, its npm package, and staticcheck.
deps:
	@command -v node >/dev/null && command -v npm >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends nodejs npm)
	@test -d $(NODEWS)/node_modules/ws || (cd $(NODEWS) && npm ci --no-audit --no-fund)
	@command -v staticcheck >/dev/null || test -x "$$($(GO) env GOPATH)/bin/staticcheck" || \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...

# fuzz runs every fuzz target briefly; set FUZZTIME for longer runs. New
# inputs are minimized for at most a second (the default, 60s each, would
# eat a short run).
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
fuzz:
	$(FUZZ) -fuzz '^FuzzReader$$' ./wsproto
	$(FUZZ) -fuzz '^FuzzUpgrade$$' ./wsproto
	$(FUZZ) -fuzz '^FuzzUTF8Validator$$' ./wsproto

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./wsproto ./server
