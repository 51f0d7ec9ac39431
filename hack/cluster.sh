#!/usr/bin/env bash
# A throwaway control plane for integration tests and demos: etcd + kube-apiserver on 127.0.0.1
# (free ports, fresh certificates), no kubelet, no controller-manager, no scheduler.
#
#   hack/cluster.sh up     start (or, if running, just re-apply the CRDs), write .local/kubeconfig
#   hack/cluster.sh down   stop both processes, delete .local/cluster and .local/kubeconfig
#   hack/cluster.sh env    print `export` lines: KUBECONFIG, MESHREADY_APISERVER, MESHREADY_AUDIT_LOG
#
# MESHREADY_CRD overrides the meshready CRD file (default crds/meshreadiness.yaml; skipped if absent).
# Binaries come from hack/envtest.sh (MESHREADY_ENVTEST, or built/found on demand).
# Client writes are audited at Metadata level to .local/cluster/audit.log (one JSON line per
# create/update/patch/delete/deletecollection, stage ResponseComplete; the apiserver's own writes
# as system:apiserver are left out) so tests can count them.
# Without a controller-manager: no garbage collection, deleted namespaces stay Terminating, no
# service-account tokens are minted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
D="$LOCAL/cluster"
KUBECONFIG_FILE="$LOCAL/kubeconfig"
READY_TIMEOUT=${READY_TIMEOUT:-90}
MESHREADY_CRD=${MESHREADY_CRD:-$ROOT/crds/meshreadiness.yaml}

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ processes
running() { # name: pid file holds a live process started for this cluster dir
  local f="$D/$1.pid" pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # Guard against pid reuse: the process must be ours (its flags name our data directory).
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$D/"
}

stop() { # name
  running "$1" || return 0
  local pid
  pid=$(<"$D/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $1 (pid $pid)"; return 0; }
    sleep 0.2
  done
  log "$1 (pid $pid) did not stop in 10s, killing"
  kill -KILL "$pid" 2>/dev/null || true
}

tails() {
  local f
  for f in "$D"/*.log; do
    [[ -f $f && $f != */audit.log ]] || continue
    printf '\n===== tail %s =====\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

# ------------------------------------------------------------------ ports
port_free() {
  if command -v ss >/dev/null; then
    [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
PICKED=" "
free_port() { # below the usual ephemeral range (32768+), so outgoing connections cannot take it
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if [[ $PICKED != *" $p "* ]] && port_free "$p"; then PICKED+="$p "; echo "$p"; return 0; fi
  done
  die "no free port found"
}

# ------------------------------------------------------------------ certificates
gen_pki() {
  local pki="$D/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=meshready-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

    sign() { # name subject extfile-content
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -out "$1.crt" -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sign admin "/O=system:masters/CN=meshready-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() { # url
  local pki="$D/pki" b64="base64 -w0"
  base64 -w0 </dev/null >/dev/null 2>&1 || b64="base64"
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: meshready
  cluster:
    server: $1
    certificate-authority-data: $($b64 <"$pki/ca.crt" | tr -d '\n')
users:
- name: meshready-admin
  user:
    client-certificate-data: $($b64 <"$pki/admin.crt" | tr -d '\n')
    client-key-data: $($b64 <"$pki/admin.key" | tr -d '\n')
contexts:
- name: meshready
  context:
    cluster: meshready
    user: meshready-admin
    namespace: default
current-context: meshready
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"
  mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# ------------------------------------------------------------------ CRDs
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

install_crds() {
  # shellcheck disable=SC1091
  source "$D/envtest.env"
  if [[ -f $MESHREADY_CRD ]]; then
    kc apply --server-side --force-conflicts -f "$MESHREADY_CRD" >/dev/null
    log "applied the meshready CRD ($MESHREADY_CRD)"
  else
    log "$MESHREADY_CRD does not exist yet (make crd): meshready CRD not installed"
  fi
  kc apply --server-side --force-conflicts -f "$ISTIO_CRDS" >/dev/null
  log "applied Istio CRDs ($ISTIO_CRDS)"
  kc wait --for=condition=Established crd --all --timeout=60s >/dev/null
  log "all $(kc get crd -o name | wc -l) CRDs Established"
}

# ------------------------------------------------------------------ commands
print_env() {
  [[ -f $D/apiserver.url ]] || die "no cluster (run: make cluster)"
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export MESHREADY_APISERVER=$(<"$D/apiserver.url")"
  echo "export MESHREADY_AUDIT_LOG=$D/audit.log"
}

up() {
  local start=$SECONDS
  command -v kubectl >/dev/null || die "kubectl is required"
  command -v openssl >/dev/null || die "openssl is required"

  if running etcd && running kube-apiserver; then
    log "already running ($(<"$D/apiserver.url")); re-applying CRDs"
    install_crds
    print_env
    return 0
  fi
  if [[ -d $D ]]; then
    log "cleaning up a stale cluster in $D"
    stop kube-apiserver
    stop etcd
    rm -rf "$D"
  fi

  local envtest=${MESHREADY_ENVTEST:-}
  if [[ -z $envtest || ! -f $envtest/env ]]; then
    envtest=$("$ROOT/hack/envtest.sh" | tail -n 1 | sed -n 's/^export MESHREADY_ENVTEST=//p')
  fi
  [[ -f $envtest/env ]] || die "no envtest build (run: make envtest)"

  mkdir -p "$D"
  cp "$envtest/env" "$D/envtest.env"
  # shellcheck disable=SC1091
  source "$D/envtest.env"

  gen_pki
  cat >"$D/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
# The apiserver's own bootstrap/housekeeping writes (RBAC defaults, leases...) are not logged.
- level: None
  users: ["system:apiserver"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
EOF

  local etcd_port peer_port api_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  local etcd_url="http://127.0.0.1:$etcd_port" api_url="https://127.0.0.1:$api_port"

  # setsid: the processes outlive `make` and are not hit by a Ctrl-C meant for it.
  setsid "$ETCD" \
    --name=meshready \
    --data-dir="$D/etcd" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="meshready=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true \
    --log-level=warn \
    </dev/null >"$D/etcd.log" 2>&1 &
  echo $! >"$D/etcd.pid"

  local i ok=
  for i in $(seq 1 100); do
    if curl -fsS "$etcd_url/health" >/dev/null 2>&1; then ok=1; break; fi
    running etcd || break
    sleep 0.1
  done
  [[ -n $ok ]] || { tails; stop etcd; die "etcd did not become healthy (logs above, kept in $D)"; }
  log "etcd $ETCD_VERSION on $etcd_url (pid $(<"$D/etcd.pid"))"

  setsid "$KUBE_APISERVER" \
    --etcd-servers="$etcd_url" \
    --secure-port="$api_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --cert-dir="$D/pki" \
    --tls-cert-file="$D/pki/apiserver.crt" \
    --tls-private-key-file="$D/pki/apiserver.key" \
    --client-ca-file="$D/pki/ca.crt" \
    --service-account-key-file="$D/pki/sa.pub" \
    --service-account-signing-key-file="$D/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --audit-policy-file="$D/audit-policy.yaml" \
    --audit-log-path="$D/audit.log" \
    </dev/null >"$D/kube-apiserver.log" 2>&1 &
  echo $! >"$D/kube-apiserver.pid"
  echo "$api_url" >"$D/apiserver.url"
  write_kubeconfig "$api_url"

  ok=
  for i in $(seq 1 $((READY_TIMEOUT * 4))); do
    if curl -fsS --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key" \
      "$api_url/readyz" >/dev/null 2>&1; then ok=1; break; fi
    running kube-apiserver || break
    sleep 0.25
  done
  if [[ -z $ok ]]; then
    local why="not ready after ${READY_TIMEOUT}s"
    running kube-apiserver || why="exited during startup"
    tails
    stop kube-apiserver
    stop etcd
    die "kube-apiserver $why (logs above, kept in $D; make cluster-down cleans up)"
  fi
  log "kube-apiserver $KUBE_VERSION on $api_url (pid $(<"$D/kube-apiserver.pid")), ready after $((SECONDS - start))s"

  install_crds || { tails; die "installing CRDs failed"; }
  log "up in $((SECONDS - start))s; kubeconfig: $KUBECONFIG_FILE"
  print_env
}

down() {
  stop kube-apiserver
  stop etcd
  rm -rf "$D" "$KUBECONFIG_FILE"
  log "down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
