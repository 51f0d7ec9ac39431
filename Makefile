# meshready: the commands a developer and CI use. `make help` lists them.
CARGO ?= cargo

.PHONY: help build test lint fmt crd demo envtest cluster cluster-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## Build the meshready binary (release)
	$(CARGO) build --release --locked

test: ## Run every test: unit, CLI golden, CRD freshness, fixtures
	$(CARGO) test --locked --all-targets

lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crd: ## Regenerate crds/meshreadiness.yaml from the Rust types
	$(CARGO) run --quiet --locked -- crd > crds/meshreadiness.yaml

demo: ## Show the main job: analyze the example shop (the operator demo comes with the controller)
	$(CARGO) run --quiet --release --locked -- analyze -f examples/ --fail-on never

envtest: ## Build (once, cached outside the repo) kube-apiserver, etcd and Istio's CRDs for tests
	hack/envtest.sh

cluster: envtest ## Start a local etcd + kube-apiserver (.local/kubeconfig) with the CRDs installed
	hack/cluster.sh up

cluster-down: ## Stop the local control plane and delete its data
	hack/cluster.sh down
