#!/usr/bin/env bash
# make bench: generates the large synthetic cluster, runs the benchmark programs (benches/),
# and times `meshready analyze` (and `istioctl analyze`, where it has been built) on the
# cluster's manifests. Figures go to stdout; BENCHMARKS.md records them.
#
#   RUNS=5                      runs of each timed command (min / median / max are printed)
#   BENCH_DIR=target/bench      where the generated manifests go (never committed)
#   ISTIOCTL=...                an istioctl binary (default $MESHREADY_CACHE/istioctl/istioctl)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-target/bench}
CACHE=${MESHREADY_CACHE:-$HOME/.cache/meshready}
ISTIOCTL=${ISTIOCTL:-$CACHE/istioctl/istioctl}
CLUSTER=$BENCH_DIR/cluster-large
CARGO=${CARGO:-cargo}

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), shared with other builds"
echo "== generator"
nice -n 5 "$CARGO" bench --locked --bench gen_cluster -- --out "$CLUSTER"
echo "== benchmarks 1 and 2: analysis"
nice -n 5 "$CARGO" bench --locked --bench analysis -- --runs "$RUNS"
echo "== benchmark 3: heap per cached object"
nice -n 5 "$CARGO" bench --locked --bench heap
echo "== benchmark 4: operator against the local control plane"
echo "not measured yet (see BENCHMARKS.md): skipped"

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
    awk -v name="$name" '
        { wall[NR] = $1; rss[NR] = $2 }
        END {
            n = asort(wall); asort(rss)
            printf "%-44s wall min %.2f s  median %.2f s  max %.2f s   peak RSS min %.0f MiB  median %.0f MiB  max %.0f MiB  (%d runs)\n",
                name, wall[1], wall[int((n + 1) / 2)], wall[n], rss[1] / 1024, rss[int((n + 1) / 2)] / 1024, rss[n] / 1024, n
        }' "$samples"
    rm -f "$samples" "$samples.one" "$samples.err"
}

echo "== benchmark 5: the offline CLI on the large cluster's manifests ($(du -sh "$CLUSTER" | cut -f1), $(ls "$CLUSTER" | wc -l) files)"
measure "5. meshready analyze -o json" target/release/meshready analyze -f "$CLUSTER" -o json --fail-on never
if [ -x "$ISTIOCTL" ]; then
    measure "5. istioctl analyze --use-kube=false" "$ISTIOCTL" analyze --use-kube=false --recursive "$CLUSTER"
else
    echo "istioctl not found at $ISTIOCTL: the istioctl comparison is skipped (BENCHMARKS.md says why)"
fi
