# ovs-netpol — see README.md. Every target installs what it needs.
SHELL := /bin/bash
GO    ?= go
BIN   := bin

# Debian packages the tests and the demo run on (iptables: kube-proxy's
# iptables mode runs iptables, iptables-save, iptables-restore and their ip6
# variants; it talks to conntrack over netlink, no conntrack binary;
# bash-completion: the CLI's completion script needs it, and its test).
DEB_PACKAGES := openvswitch-switch ethtool iproute2 containernetworking-plugins etcd-server iptables bash-completion

.PHONY: all build test deps fmt vet clean demo demo-down kube kube-apiserver kube-proxy

all: build

## deps: install the Debian packages (real Open vSwitch etc.) if missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@for c in ovsdb-server ovs-vswitchd ovs-ofctl ovs-appctl ip ethtool etcd kubectl \
	  iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
	  command -v $$c >/dev/null || { echo "missing $$c after install" >&2; exit 1; }; done

# Every binary's --version (internal/version): git describe and the commit.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/ovs-netpol/ovs-netpol/internal/version.Version=$(VERSION) \
	-X github.com/ovs-netpol/ovs-netpol/internal/version.Commit=$(COMMIT)
PREFIX  ?= /usr/local

## build: the CLI, agent and CNI plugin into ./bin, and the CLI as the
## kubectl plugin bin/kubectl-ovs_netpol (a hard link: `kubectl ovs-netpol ...`).
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	ln -f $(BIN)/ovs-netpol $(BIN)/kubectl-ovs_netpol

## install: the CLI and its kubectl plugin name into $(PREFIX)/bin (on PATH:
## `kubectl ovs-netpol`; kubectl_complete-ovs_netpol gives kubectl's completion
## of the plugin); agent and CNI plugin are deployed with manifests/.
.PHONY: install
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/ovs-netpol $(DESTDIR)$(PREFIX)/bin/ovs-netpol
	ln -f $(DESTDIR)$(PREFIX)/bin/ovs-netpol $(DESTDIR)$(PREFIX)/bin/kubectl-ovs_netpol
	ln -f $(DESTDIR)$(PREFIX)/bin/ovs-netpol $(DESTDIR)$(PREFIX)/bin/kubectl_complete-ovs_netpol
	@echo "installed: ovs-netpol, kubectl ovs-netpol; shell completion: source <(ovs-netpol completion bash) (zsh, fish too)"

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^ovsdb-schema/.*generated')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## kube: build kube-apiserver and kube-proxy from the k8s.io/kubernetes module
## (tools/kube; cached in $${OVS_NETPOL_CACHE:-$$HOME/.cache/ovs-netpol}; ~8 min cold for the first).
kube: kube-apiserver kube-proxy

kube-apiserver:
	bash scripts/build-kube.sh kube-apiserver

# After kube-apiserver (not in parallel with it): they share most of the build.
kube-proxy: | kube-apiserver
	bash scripts/build-kube.sh kube-proxy

## test: every test, against real Open vSwitch, etcd and kube-apiserver (needs root),
## then a short run of every fuzz target (fuzz-short).
test: deps fmt vet kube
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz-short

# Fuzz targets as PACKAGE:TARGET. Their seed corpora (testdata/fuzz/) also
# run as plain tests in `go test ./...`.
FUZZ_TARGETS := ./pkg/manifest:FuzzParse ./pkg/compiler:FuzzCompileVsEvaluator \
	./pkg/compiler:FuzzParseBindings ./pkg/normalize:FuzzNetworkPolicy
FUZZTIME ?= 25s
# Go minimizes every input that widens coverage, for up to 60s by default,
# and counts no executions meanwhile: a short run then spends most of its
# time minimizing (and ends mid-minimization). A failing input is still
# written, less minimized.
FUZZMINTIME ?= 3s

## fuzz-short: each fuzz target for FUZZTIME (default 25s); a finding fails
## the run and is written to the package's testdata/fuzz/TARGET/. A bare
## "context deadline exceeded" with no failing input is Go 1.26's fuzzing
## coordinator racing its own -fuzztime deadline (go.dev/issue/75804, fixed
## in Go 1.27): it is reported, the seed corpus is rerun as a plain test,
## and only that result counts.
.PHONY: fuzz-short
fuzz-short:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz: $$name ($$pkg) for $(FUZZTIME)"; \
	  if $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) >$$out 2>&1; then \
	    grep -E '^fuzz: elapsed' $$out | tail -n 1; tail -n 1 $$out; \
	  elif ! grep -q 'Failing input written' $$out && \
	       [ "$$(grep -vE '^(fuzz: |--- FAIL: '"$$name"' |    context deadline exceeded$$|FAIL|exit status 1$$)' $$out)" = "" ]; then \
	    grep -E '^fuzz: elapsed' $$out | tail -n 1; \
	    echo "fuzz: $$name: no failing input, only Go's coordinator deadline race (go.dev/issue/75804); rerunning its corpus"; \
	    $(GO) test -count=1 $$pkg -run "^$$name\$$" || exit 1; \
	  else cat $$out; exit 1; fi; \
	done

## soak: the churn soak for SOAK_DURATION (default here 20m; `make test` runs 3m).
SOAK_DURATION ?= 20m
.PHONY: soak
soak: deps kube
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -timeout 60m ./e2e -run '^TestChurnSoak$$'

clean:
	rm -rf $(BIN)

## demo: the seed example live on two nodes joined by the Geneve overlay over a routed underlay (apiserver, Open vSwitch and agent per node, CNI-attached pods), real traffic; left running.
demo:
	bash scripts/demo.sh

## demo-down: remove everything the demo started (processes, network namespaces, veths, files).
demo-down:
	bash scripts/demo.sh down

## e2e: the end-to-end tests only (built agent and CNI plugin, real traffic); `make test` runs them too.
.PHONY: e2e
e2e: deps kube
	$(GO) test -race -count=1 -timeout 20m -v ./e2e/...

## bench: the cluster-scale benchmarks against real Open vSwitch and kube-apiserver (~14 min): goals vs measured (BENCHMARKS.md).
.PHONY: bench
bench: deps kube
	$(GO) run ./bench/cmd/benchtable
