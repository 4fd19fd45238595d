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

# The gateway is the module at the root. What only its checks and tools
# need lives in modules of their own, so that the gateway's users download
# only what it runs on; go.work joins them for development (go.work's
# `use` lines are the list). `./...` stops at a module's edge: PKGS names
# every module's packages, for one `go test`, `go vet` and staticcheck.
MODDIRS = $(patsubst $(CURDIR)/%,%,$(patsubst $(CURDIR),.,$(shell $(GO) list -m -f '{{.Dir}}')))
PKGS    = $(foreach m,$(MODDIRS),$(if $(filter .,$(m)),./...,./$(m)/...))

.PHONY: run test deps lint mods fuzz bench

run:
	$(GO) run ./cmd/gateway

# The test binaries are built in parallel, then run one package at a time:
# several tests bound a healthy client's latency while the gateway is under
# attack (cmd/gateway, attack_test.go), and on two cores, beside another
# package's tests, they measured that package as much as the gateway.
test: deps lint
	$(GO) test -race -run '^$$' $(PKGS)
	$(GO) test -race -p 1 $(PKGS)
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

lint: mods
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck $(PKGS)

# mods checks the modules: go.work uses every go.mod in the tree (a module
# left out would go untested); each module's go.mod and go.sum are tidy;
# and the workspace builds each module's packages and tests with the
# versions its own go.mod selects, so the gateway is tested as its users
# and the Dockerfile build it (`go work sync` mends a difference).
MODVERSIONS = $(GO) list -deps -test -f '{{with .Module}}{{if not (or .Main (and .Replace (eq .Replace.Version "")))}}{{.Path}} {{.Version}}{{with .Replace}} => {{.Path}} {{.Version}}{{end}}{{end}}{{end}}' ./... >"$$tmp/list" && sort -u "$$tmp/list"
mods:
	@inwork="$(sort $(MODDIRS))"; intree="$$(git ls-files --cached --others --exclude-standard '*go.mod' | xargs -n1 dirname | sort | xargs)"; \
		if [ "$$inwork" != "$$intree" ]; then echo "go.work uses $$inwork; the modules in the tree are $$intree"; exit 1; fi
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && for m in $(MODDIRS); do \
		(cd $$m && $(GO) mod tidy -diff) || { echo "$$m: go.mod or go.sum is not tidy: run go mod tidy in $$m"; exit 1; }; \
		(cd $$m && $(MODVERSIONS) >"$$tmp/work" && GOWORK=off $(MODVERSIONS) >"$$tmp/alone") || exit 1; \
		diff "$$tmp/alone" "$$tmp/work" || { echo "$$m: the workspace builds it with other versions than its go.mod selects (<: go.mod, >: go.work): 'go work sync' mends a version the workspace raised"; exit 1; }; \
	done

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
	$(FUZZ) -fuzz '^FuzzNames$$' ./protocol
	$(FUZZ) -fuzz '^FuzzParseEventID$$' ./protocol

# bench runs the micro-benchmarks; the load harness is `go run ./bench`
# (see bench/README.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./wsproto ./server ./broadcast ./presence ./bench
