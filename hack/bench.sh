#!/usr/bin/env bash
# make bench: generates the large synthetic cluster, runs the benchmark programs (benches/),
# and times `meshready analyze` (and `istioctl analyze`, where it has been built) on the
# cluster's manifests. Figures go to stdout; BENCHMARKS.md records them.
#
#   RUNS=5                      runs of each timed command (min / median / max are printed)
#   BENCH_DIR=target/bench      where the generated manifests go (never committed)
#   ISTIOCTL=...                an istioctl binary (default $MESHREADY_CACHE/istioctl/istioctl)
#   OPERATOR_BENCH_FLAGS=...    more flags for benchmark 4, e.g. "--samples 20 --debounce-ms 1000"
#   ONLY=4 / ONLY=5             run benchmark 4 or 5 alone
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-target/bench}
CACHE=${MESHREADY_CACHE:-$HOME/.cache/meshready}
ISTIOCTL=${ISTIOCTL:-$CACHE/istioctl/istioctl}
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

# measure NAME COMMAND...: runs it $RUNS times under /usr/bin/time, prints wall time and peak
# RSS, min / median / max.
measure() {
    local name=$1
    shift
    local samples
    samples=$(mktemp)
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f "%e %M" -o "$samples.one" "$@" > /dev/null 2> "$samples.err" || {
            local rc=$?
            # analyze exits 1 when findings reach --fail-on; anything else is a failure.
            if [ "$rc" -gt 1 ]; then
                echo "$name failed (exit $rc):" >&2
                tail -5 "$samples.err" >&2
                rm -f "$samples" "$samples.one" "$samples.err"
                return 1
            fi
        }
        tail -1 "$samples.one" >> "$samples"
    done
    local n wall rss
    n=$(wc -l < "$samples")
    wall=$(cut -d' ' -f1 "$samples" | sort -g)
    rss=$(cut -d' ' -f2 "$samples" | sort -g)
    pick() { sed -n "$1p" <<< "$2"; }
    local mid=$(((n + 1) / 2))
    printf "%-40s wall min %s s  median %s s  max %s s   peak RSS min %s MiB  median %s MiB  max %s MiB  (%d runs)\n" \
        "$name" "$(pick 1 "$wall")" "$(pick "$mid" "$wall")" "$(pick "$n" "$wall")" \
        "$(($(pick 1 "$rss") / 1024))" "$(($(pick "$mid" "$rss") / 1024))" "$(($(pick "$n" "$rss") / 1024))" "$n"
    rm -f "$samples" "$samples.one" "$samples.err"
}

echo "== benchmark 5: the offline CLI on the large cluster's manifests ($(du -sh "$CLUSTER" | cut -f1), $(ls "$CLUSTER" | wc -l) files)"
measure "5. meshready analyze -o json" target/release/meshready analyze -f "$CLUSTER" -o json --fail-on never
if [ -x "$ISTIOCTL" ]; then
    measure "5. istioctl analyze --use-kube=false" "$ISTIOCTL" analyze --use-kube=false --recursive "$CLUSTER"
else
    echo "istioctl not found at $ISTIOCTL: the istioctl comparison is skipped (BENCHMARKS.md says why)"
fi
