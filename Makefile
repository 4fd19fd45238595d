# pushgate: `make run` starts the gateway, `make test` installs what the
# tests need (when missing) and runs them all.

GO        ?= go
NODEWS    := server/testdata/nodews
# Debian's own Python: python3-websockets (the README's Python example and
# its test) is installed for it, not for a pyenv or venv python3 that may
# come first on PATH.
PYTHON3   ?= /usr/bin/python3
# apt-get needs root; as another user it runs through sudo.
SUDO      ?= $(if $(filter 0,$(shell id -u)),,sudo)
FUZZTIME  ?= 300000x
STATICCHECK_VERSION := v0.8.2

.PHONY: run test deps lint fuzz bench

run:
	$(GO) run ./cmd/gateway

test: deps lint
	$(GO) test -race ./...
	$(MAKE) fuzz

# deps installs the test tools that are missing: Node.js with npm (Debian
# packages) for the ws interop client, the JS client's tests and the
# README's Node example, Chromium (Debian) for the chat page's browser test,
# Prometheus (with promtool), nats-server and HAProxy (Debian) for the
# monitoring and cluster tests, nginx (Debian) with HAProxy for the TLS
# test, python3-websockets (Debian) for the README's Python example, the ws
# npm package, and staticcheck.
APT_PKGS = $(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm) \
	$(if $(shell command -v chromium),,chromium fonts-liberation) \
	$(if $(shell command -v prometheus),,prometheus) \
	$(if $(shell command -v nats-server),,nats-server) \
	$(if $(shell command -v haproxy),,haproxy) \
	$(if $(shell $(PYTHON3) -c 'import websockets' 2>/dev/null && echo ok),,python3-websockets) \
	$(if $(shell command -v nginx),,nginx)
deps:
	@test -z "$(strip $(APT_PKGS))" || \
		($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PKGS))
	@test -d $(NODEWS)/node_modules/ws || (cd $(NODEWS) && npm ci --no-audit --no-fund)
	@command -v staticcheck >/dev/null || test -x "$$($(GO) env GOPATH)/bin/staticcheck" || \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...

# fuzz runs every fuzz target briefly (about 10 seconds each here); set
# FUZZTIME for longer runs. The budget is a number of executions, not a
# duration: with a duration, Go 1.26's fuzz coordinator can fail a target
# with "context deadline exceeded" as time runs out, having found nothing
# (go.dev/issue/75804, fixed in Go 1.27). New inputs are minimized briefly;
# the default, 60s each, would eat a short run.
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10000x
fuzz:
	$(FUZZ) -fuzz '^FuzzReader$$' ./wsproto
	$(FUZZ) -fuzz '^FuzzUpgrade$$' ./wsproto
	$(FUZZ) -fuzz '^FuzzUTF8Validator$$' ./wsproto
	$(FUZZ) -fuzz '^FuzzTokenFromHead$$' ./auth

# bench runs the micro-benchmarks; the load harness is `go run ./bench`
# (see bench/README.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./wsproto ./server ./broadcast ./bench
