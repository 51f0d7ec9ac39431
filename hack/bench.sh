#!/usr/bin/env bash
# make bench: generates the large synthetic cluster, runs the benchmark programs (benches/),
# and times `meshready analyze` (and `istioctl analyze`, where it has been built) on the
# cluster's manifests. Figures go to stdout; BENCHMARKS.md records them.
#
#   RUNS=5                      runs of each timed command (min / median / max are printed)
#   BENCH_DIR=target/bench      where the generated manifests go (never committed)
#   ISTIOCTL=...                an istioctl binary (default: built once by hack/istioctl.sh)
#   OPERATOR_BENCH_FLAGS=...    more flags for benchmark 4, e.g. "--samples 20 --debounce-ms 1000"
#   ONLY=4 / ONLY=5             run benchmark 4 or 5 alone
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-target/bench}
CACHE=${MESHREADY_CACHE:-$HOME/.cache/meshready}
ISTIOCTL=${ISTIOCTL:-}
CLUSTER=$BENCH_DIR/cluster-large
CARGO=${CARGO:-cargo}

# ONLY=5 runs benchmark 5 alone (on a cluster generated before); ONLY=4 benchmark 4 alone.
ONLY=${ONLY:-}

# Benchmark 4 needs the envtest binaries (`make envtest` builds them once from the Go module
# proxy; `make bench` does not, as it takes long): without them the program exits 2 and the
# benchmark is reported as skipped.
operator_bench() {
    echo "== benchmark 4: operator against the local control plane"
    local rc=0
    # shellcheck disable=SC2086 # the flags are meant to split
    nice -n 5 "$CARGO" bench --locked --bench operator -- --runs "$RUNS" ${OPERATOR_BENCH_FLAGS:-} || rc=$?
    if [ "$rc" = 2 ]; then
        echo "benchmark 4 SKIPPED: no envtest binaries (run \`make envtest\` first)"
    elif [ "$rc" != 0 ]; then
        echo "benchmark 4 failed (exit $rc)" >&2
        exit "$rc"
    fi
}

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), shared with other builds"
if [ "$ONLY" = 4 ]; then
    operator_bench
    exit 0
fi
if [ "$ONLY" != 5 ] || [ ! -d "$CLUSTER" ]; then
    echo "== generator"
    nice -n 5 "$CARGO" bench --locked --bench gen_cluster -- --out "$CLUSTER"
fi
if [ "$ONLY" != 5 ]; then
    echo "== benchmarks 1 and 2: analysis"
    nice -n 5 "$CARGO" bench --locked --bench analysis -- --runs "$RUNS"
    echo "== benchmark 3: heap per cached object"
    nice -n 5 "$CARGO" bench --locked --bench heap
    operator_bench
fi

nice -n 5 "$CARGO" build --release --locked --quiet

# Benchmark 5 runs both analyzers on the same files, alternating run by run so that both see
# the same machine, and prints their figures side by side.
[ -n "$ISTIOCTL" ] || ISTIOCTL=$(hack/istioctl.sh | tail -n 1)
MESHREADY_ANALYZE=(target/release/meshready analyze -f "$CLUSTER" -o json --fail-on never)
# -A: report every namespace's messages (offline it reports only `default`'s otherwise);
# --timeout: its default of 30 s would stop it on the large cluster.
ISTIOCTL_ANALYZE=("$ISTIOCTL" analyze --use-kube=false -A --timeout 30m -o json "$CLUSTER")

SAMPLES=$(mktemp -d)
trap 'rm -rf "$SAMPLES"' EXIT

# timed NAME COMMAND...: one run under /usr/bin/time; appends "wall-seconds peak-KiB" to
# $SAMPLES/NAME and keeps the output of the last run in $SAMPLES/NAME.out.
timed() {
    local name=$1
    shift
    local rc=0
    /usr/bin/time -f "%e %M" -o "$SAMPLES/$name.one" "$@" > "$SAMPLES/$name.out" 2> "$SAMPLES/$name.err" || rc=$?
    # analyze exits 1 when findings reach --fail-on; anything else is a failure.
    if [ "$rc" -gt 1 ]; then
        echo "$name failed (exit $rc):" >&2
        tail -5 "$SAMPLES/$name.err" >&2
        exit 1
    fi
    tail -1 "$SAMPLES/$name.one" >> "$SAMPLES/$name"
}

# summary NAME LABEL: min / median / max of wall time and peak RSS.
summary() {
    local n wall rss mid
    n=$(wc -l < "$SAMPLES/$1")
    wall=$(cut -d' ' -f1 "$SAMPLES/$1" | sort -g)
    rss=$(cut -d' ' -f2 "$SAMPLES/$1" | sort -g)
    mid=$(((n + 1) / 2))
    pick() { sed -n "$1p" <<< "$2"; }
    printf "%-40s wall min %s s  median %s s  max %s s   peak RSS min %s MiB  median %s MiB  max %s MiB  (%d runs)\n" \
        "$2" "$(pick 1 "$wall")" "$(pick "$mid" "$wall")" "$(pick "$n" "$wall")" \
        "$(($(pick 1 "$rss") / 1024))" "$(($(pick "$mid" "$rss") / 1024))" "$(($(pick "$n" "$rss") / 1024))" "$n"
}

echo "== benchmark 5: the offline CLI on the large cluster's manifests ($(du -sh "$CLUSTER" | cut -f1), $(ls "$CLUSTER" | wc -l) files), beside $ISTIOCTL"
for _ in $(seq "$RUNS"); do
    timed meshready "${MESHREADY_ANALYZE[@]}"
    timed istioctl "${ISTIOCTL_ANALYZE[@]}"
done
summary meshready "5. meshready analyze -o json"
summary istioctl "5. istioctl analyze --use-kube=false"
# What each reported, by code, and whether the one question both answer (a route to a subset
# no DestinationRule defines: meshready's MR901, istioctl's IST0101 on a VirtualService) has
# the same answer, object by object.
python3 - "$SAMPLES/meshready.out" "$SAMPLES/istioctl.out" <<'PY'
import collections, json, sys
ours = json.load(open(sys.argv[1]))["findings"]
theirs = json.load(open(sys.argv[2]))
def by_code(codes):
    return ", ".join(f"{code} {n}" for code, n in collections.Counter(codes).most_common())
print(f"meshready: {len(ours)} findings ({by_code(f['code'] for f in ours)})")
print(f"istioctl:  {len(theirs)} messages ({by_code(m['code'] for m in theirs)})")
ours_901 = {(f["object"]["namespace"], f["object"]["name"]) for f in ours if f["code"] == "MR901"}
theirs_101 = {tuple(m["origin"].split(" ", 1)[1].split("/", 1)) for m in theirs
              if m["code"] == "IST0101" and m["origin"].startswith("VirtualService ")
              and "subset" in m["message"]}
print(f"undefined subsets: meshready MR901 on {len(ours_901)} VirtualServices, istioctl IST0101 on "
      f"{len(theirs_101)}; both {len(ours_901 & theirs_101)}, only meshready "
      f"{len(ours_901 - theirs_101)}, only istioctl {len(theirs_101 - ours_901)}")
PY
