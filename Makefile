# meshready: the commands a developer and CI use. `make help` lists them.
CARGO ?= cargo
# The test control plane: pinned so that every machine tests against the same binaries.
export KUBE_VERSION ?= v1.36.3
export ETCD_VERSION ?= v3.6.16
export ISTIO_API_VERSION ?= v1.30.3
export MESHREADY_CACHE ?= $(HOME)/.cache/meshready
export MESHREADY_ENVTEST ?= $(MESHREADY_CACHE)/envtest/$(KUBE_VERSION)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= ghcr.io/meshready/meshready:$(VERSION)
CONTAINER_ENGINE ?= docker

.PHONY: help build test lint fmt crd demo analyze-examples envtest cluster cluster-down image image-rootfs bench istioctl

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## Build the meshready binary (release)
	$(CARGO) build --release --locked

test: envtest ## Every test: unit, CLI, golden, fixtures, CRD freshness, operator on a real API server
	$(CARGO) test --locked --all-targets

lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

image: ## Build the container image with $(CONTAINER_ENGINE) (needs a running engine)
	$(CONTAINER_ENGINE) build -t $(IMAGE) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD) --build-arg CREATED=$$(date -u +%FT%TZ) .

image-rootfs: build ## Without an engine: the image's final filesystem in target/rootfs, run under chroot as UID 65532 (root needed)
	hack/rootfs.sh target/release/meshready target/rootfs
	env -i chroot --userspec=65532:65532 target/rootfs /usr/local/bin/meshready version

crd: ## Regenerate crds/meshreadiness.yaml from the Rust types
	$(CARGO) run --quiet --locked -- crd > crds/meshreadiness.yaml

demo: envtest ## A local control plane, the example shop, the operator, and kubectl get meshreadiness
	hack/demo.sh

analyze-examples: ## The offline analyzer on examples/
	$(CARGO) run --quiet --release --locked -- analyze -f examples/ --fail-on never

bench: ## Benchmarks on a generated large cluster (BENCHMARKS.md records the figures)
	hack/bench.sh

istioctl: ## Build (once, cached outside the repo) the istioctl benchmark 5 compares with
	hack/istioctl.sh

envtest: ## Build (once, cached outside the repo) kube-apiserver, etcd and Istio's CRDs for tests
	hack/envtest.sh

cluster: envtest ## Start a local etcd + kube-apiserver (.local/kubeconfig) with the CRDs installed
	hack/cluster.sh up

cluster-down: ## Stop the local control plane and delete its data
	hack/cluster.sh down
