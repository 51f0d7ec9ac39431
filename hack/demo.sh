#!/usr/bin/env bash
# The main job, end to end on this machine: a local control plane (etcd + kube-apiserver with
# Istio's CRDs), the example shop applied to it, the operator running against it, and what
# `kubectl get meshreadiness` then says. Everything is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KUBECONFIG_FILE="$ROOT/.local/kubeconfig"
LOG="$ROOT/.local/operator.log"
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@" 2> >(grep -v 'version difference' >&2); }

operator_pid=
cleanup() {
  [[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  hack/cluster.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> building meshready"
cargo build --release --locked --quiet
echo "==> starting a local control plane (etcd + kube-apiserver on 127.0.0.1)"
hack/cluster.sh up
echo "==> applying examples/ (the shop, one clean namespace, MeshReadiness objects)"
kc apply --server-side -f examples/ >/dev/null
echo "==> running the operator (log: .local/operator.log)"
KUBECONFIG="$KUBECONFIG_FILE" RUST_LOG=meshready=info target/release/meshready controller >"$LOG" 2>&1 &
operator_pid=$!

wanted=$(kc get meshreadiness -A --no-headers | wc -l)
for _ in $(seq 1 60); do
  done_=$(kc get meshreadiness -A -o jsonpath='{range .items[*]}{.status.observedGeneration}{"\n"}{end}' | grep -c . || true)
  [[ $done_ -ge $wanted ]] && break
  sleep 1
done

echo
echo "==> kubectl get meshreadiness -A"
kc get meshreadiness -A
echo
echo "==> why shop-payments is not Ready"
kc get meshreadiness -n shop-payments -o jsonpath='{range .items[*].status.conditions[?(@.status!="True")]}{.type}{": "}{.reason}{" - "}{.message}{"\n"}{end}'
echo
echo "==> its findings"
kc get meshreadiness -n shop-payments -o jsonpath='{range .items[*].status.findings[*]}{.severity}{" "}{.code}{" "}{.kind}{"/"}{.name}{"\n"}{end}'
echo
echo "==> Events it recorded"
kc get events.events.k8s.io -n shop-payments --field-selector reportingController=meshready \
  -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.regarding.kind,NOTE:.note --no-headers | cut -c1-150 | sed -n 1,12p
echo
echo "==> remediations (DryRun: listed in status, nothing written)"
kc get meshreadiness -A -o jsonpath='{range .items[*]}{range .status.remediations[*]}{.state}{" "}{.kind}{" "}{.namespace}{"/"}{.name}{" ("}{.reason}{")\n"}{end}{end}'
echo
echo "==> kubectl wait --for=condition=Ready on the clean namespace"
kc wait --for=condition=Ready meshreadiness --all -n shop-reviews --timeout=30s
