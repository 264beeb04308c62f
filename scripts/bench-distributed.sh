#!/usr/bin/env bash
# Throughput of distributed training on this machine: one process (`rowflow train`), one rank
# of the distributed path alone, and mpirun -np 2 and 4 (row-wise), repetitions interleaved so
# drift hits every setting alike; prints each setting's median samples/s (training loop only,
# from the summary JSON) and its ratio to one process, and the bytes each step moved.
#
#   scripts/bench-distributed.sh [BIN] [REPS]     (BIN built with `--features mpi`)
set -euo pipefail
BIN=${1:-target/release/rowflow}
REPS=${2:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1
RUN=(train --backend cpu --compute-threads 1 --steps 200 --batch-size 512 --eval-every 0
    --table-rows 100000)
MPI=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader)
for r in $(seq "$REPS"); do
    "$BIN" "${RUN[@]}" --summary-json "$OUT/single-$r.json" >/dev/null 2>&1
    "$BIN" "${RUN[@]}" --distributed --summary-json "$OUT/alone-$r.json" >/dev/null 2>&1
    for n in 2 4; do
        "${MPI[@]}" -np "$n" "$BIN" "${RUN[@]}" --distributed \
            --summary-json "$OUT/mpi$n-$r.json" >/dev/null 2>&1
    done
done
python3 - "$OUT" "$REPS" <<'PY'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
def load(name):
    return [json.load(open(f"{out}/{name}-{r}.json")) for r in range(1, reps + 1)]
base = statistics.median(s["samples_per_sec"] for s in load("single"))
print(f"{'setting':<34} {'samples/s':>10} {'vs 1 process':>12} {'a2a B/step':>11} {'all-reduce B/step':>17}")
for name, label in [("single", "1 process (rowflow train)"), ("alone", "1 rank alone (--distributed)"),
                    ("mpi2", "2 ranks (mpirun -np 2)"), ("mpi4", "4 ranks (mpirun -np 4)")]:
    runs = load(name)
    med = statistics.median(s["samples_per_sec"] for s in runs)
    t = runs[0].get("traffic")
    a2a = ar = "-"
    if t:
        steps = t["steps"]
        a2a = sum(v["intra_host"] + v["inter_host"] for v in t["tiers"].values()) // steps
        ar = sum(t["all_reduce"].values()) // steps
    print(f"{label:<34} {med:>10.0f} {med / base:>12.2f} {a2a:>11} {ar:>17}")
PY
