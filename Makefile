# ovs-netpol — see README.md. Every target installs what it needs.
SHELL := /bin/bash
GO    ?= go
BIN   := bin

# Debian packages the tests and the demo run on.
DEB_PACKAGES := openvswitch-switch ethtool iproute2 containernetworking-plugins etcd-server

.PHONY: all build test deps fmt vet clean demo demo-down kube-apiserver

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
	@for c in ovsdb-server ovs-vswitchd ovs-ofctl ovs-appctl ip ethtool etcd kubectl; do \
	  command -v $$c >/dev/null || { echo "missing $$c after install" >&2; exit 1; }; done

## build: the CLI, agent and CNI plugin into ./bin.
build:
	$(GO) build -o $(BIN)/ ./cmd/...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^ovsdb-schema/.*generated')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## kube-apiserver: build it from the k8s.io/kubernetes module (cached in
## $${OVS_NETPOL_CACHE:-$$HOME/.cache/ovs-netpol}; ~8 min cold).
kube-apiserver:
	bash scripts/build-kube-apiserver.sh

## test: every test, against real Open vSwitch, etcd and kube-apiserver (needs root).
test: deps fmt vet kube-apiserver
	$(GO) test -race -count=1 -timeout 30m ./...

clean:
	rm -rf $(BIN)

## demo: the seed example live (apiserver, Open vSwitch, agent, CNI-attached pods), real traffic; left running.
demo:
	bash scripts/demo.sh

## demo-down: remove everything the demo started (processes, network namespaces, veths, files).
demo-down:
	bash scripts/demo.sh down

## e2e: the end-to-end tests only (built agent and CNI plugin, real traffic); `make test` runs them too.
.PHONY: e2e
e2e: deps kube-apiserver
	$(GO) test -race -count=1 -timeout 20m -v ./e2e/...

## bench: the cluster-scale benchmarks against real Open vSwitch and kube-apiserver (~10 min): goals vs measured (BENCHMARKS.md).
.PHONY: bench
bench: deps kube-apiserver
	$(GO) run ./bench/cmd/benchtable
