#!/usr/bin/env bash
# One-shot check of a GPU machine that has no Rust toolchain and no internet: runs a rowflow
# release binary built elsewhere and leaves everything it measured under $OUT.
#
#   scripts/device-check.sh [BIN]        BIN: the rowflow binary (default target/release/rowflow)
#
# Build BIN with `cargo build --release --features nccl` for the NCCL self-test (not `mpi`: the
# GPU machine has no libmpi, and one rank needs none).
#
# Environment:
#   OUT                      where results go (default out/device-check)
#   ROWFLOW_STANDIN=cpu      no GPU here: the CPU stands in for CUDA and every size is small
#                            (CI runs the script this way, so it is known to work end to end)
#
# Every step has its own timeout and never stops the script: a failed step is recorded (its exit
# status, seconds and the end of its stderr in summary.txt) and the next one runs. The whole
# script stays under 8 minutes. It exits non-zero when any step failed.
set -uo pipefail

BIN=${1:-${ROWFLOW_BIN:-target/release/rowflow}}
OUT=${OUT:-out/device-check}
STANDIN=${ROWFLOW_STANDIN:-}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
failed=0
started=$(date +%s)

say() { echo "== $*" | tee -a "$OUT/summary.txt"; }

# step NAME TIMEOUT_S COMMAND…: stdout to $OUT/NAME.out (JSON where the command writes JSON),
# stderr to $OUT/NAME.err.
step() {
    local name=$1 limit=$2
    shift 2
    say "$name (at most ${limit} s): $*"
    local t0 rc
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
    rc=$?
    local took=$(($(date +%s) - t0))
    if [ "$rc" = 0 ]; then
        echo "   ok in ${took} s" | tee -a "$OUT/summary.txt"
    else
        failed=$((failed + 1))
        local why="exit status $rc"
        [ "$rc" = 124 ] && why="timed out after ${limit} s"
        echo "   FAILED ($why) after ${took} s; stderr ends:" | tee -a "$OUT/summary.txt"
        tail -n 5 "$OUT/$name.err" | sed 's/^/     /' | tee -a "$OUT/summary.txt"
    fi
}

if [ ! -x "$BIN" ]; then
    say "no rowflow binary at $BIN: build one with 'cargo build --release' on a machine with Rust and carry it here"
    exit 2
fi

# First: which CUDA libraries this machine has, and which the binary would load.
say "machine: $(uname -srm); $(nproc) cores; binary $BIN"
{
    echo "# driver and toolkit"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    echo "# libraries on the loader's path (ldconfig) and in LD_LIBRARY_PATH / CUDA folders"
    for lib in libcuda.so libnvrtc.so libcublas.so libcublasLt.so; do
        found=$( (ldconfig -p 2>/dev/null | grep -o "/[^ ]*${lib}[.0-9]*" | sort -u) || true)
        ld=${LD_LIBRARY_PATH:-}
        for d in ${ld//:/ } /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
            [ -d "$d" ] && found="$found"$'\n'"$(ls "$d"/${lib}* 2>/dev/null)"
        done
        found=$(echo "$found" | grep -v '^$' | sort -u | tr '\n' ' ')
        echo "$lib: ${found:-NOT FOUND}"
    done
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} >"$OUT/libraries.txt" 2>&1
cat "$OUT/libraries.txt" | tee -a "$OUT/summary.txt"

if [ -n "$STANDIN" ]; then
    # No GPU: the CPU stands in, at sizes that finish in seconds.
    GPU=$STANDIN
    KERNEL_SIZE=(--tables 2 --rows 20000 --dim 32 --batch-size 256 --pooling 8 --reps 3 --copy-mib 16)
    PIPE_SIZE=(--tables 2 --rows 20000 --dim 16 --batch-size 256 --steps 12 --warmup 4
        --fractions 0.2 --windows 4 --policies lookahead,lru --link-gbps 0)
    TRAIN=(--steps 200 --eval-every 0)
    CHECK=(--quick)
    REPR=(--synthetic-samples 5000 --synthetic-test-samples 2000 --criteo-epochs 1 --reps 2
        --batch-sizes 1,256 --dhe-k 32)
    SERVE=(--backends cpu --train-samples 20480 --dhe-k 32 --duration-s 0.5 --qps 100,1000)
else
    GPU=cuda
    KERNEL_SIZE=()
    PIPE_SIZE=(--fractions 0.05 --windows 1,8 --policies lookahead,lru,all-on-device --steps 30 --warmup 10)
    TRAIN=()
    CHECK=()
    REPR=(--synthetic-samples 50000 --synthetic-test-samples 20000 --criteo-epochs 1 --reps 3)
    # MP-Rec's setting: paths on two backends, GPU and CPU, each its own queue.
    SERVE=(--backends cuda,cpu --train-samples 204800 --duration-s 3)
fi

step info 60 "$BIN" info --json
if "$BIN" check --help >/dev/null 2>&1; then
    backends=all
    [ -n "$STANDIN" ] && backends=$STANDIN
    step check 180 "$BIN" check --backend "$backends" --json "${CHECK[@]}"
else
    say "check: this binary has no 'rowflow check'; skipped"
fi
step bench-kernels-$GPU 120 "$BIN" bench kernels --backend "$GPU" --json "${KERNEL_SIZE[@]}"
if [ -z "$STANDIN" ]; then
    # Vulkan on the NVIDIA driver, when the machine has its ICD.
    step bench-kernels-wgpu 120 env WGPU_BACKEND=vulkan "$BIN" bench kernels --backend wgpu --json
fi
step bench-pipeline-$GPU 150 "$BIN" bench pipeline --backend "$GPU" --json "${PIPE_SIZE[@]}"
step train-$GPU 120 "$BIN" train --backend "$GPU" --summary-json "$OUT/train-$GPU.json" "${TRAIN[@]}"
# Representations and checkpoints: a hybrid trained and saved, then scored from its checkpoint
# (kept outside $OUT: it holds every table).
ckpt="${TMPDIR:-/tmp}/rowflow-device-check-$$"
step train-hybrid-$GPU 120 "$BIN" train --backend "$GPU" --representation hybrid --dhe-k 64 \
    --steps 100 --eval-every 0 --save "$ckpt" --summary-json "$OUT/train-hybrid-$GPU.json"
step eval-$GPU 60 "$BIN" eval --model "$ckpt" --backend "$GPU" --json
rm -rf "$ckpt" "$ckpt.old" "$ckpt.tmp"
if "$BIN" bench repr --help >/dev/null 2>&1; then
    step bench-repr-$GPU 150 "$BIN" bench repr --backends "$GPU" --json "${REPR[@]}"
fi

if "$BIN" serve --help >/dev/null 2>&1; then
    step serve-sweep-$GPU 240 "$BIN" serve --sweep --json "${SERVE[@]}"
fi

# The distributed path alone (one rank): the Local engine, and where a GPU is, NCCL's one-rank
# communicator, which must give the same run bit for bit (the dense layers on the CPU both times).
if "$BIN" train --help 2>/dev/null | grep -q -- --collective; then
    DIST=(train --distributed --backend cpu --steps 50 --eval-every 0 --table-rows 20000)
    step dist-local 60 "$BIN" "${DIST[@]}" --summary-json "$OUT/dist-local.json"
    if [ -z "$STANDIN" ]; then
        step dist-nccl 60 "$BIN" "${DIST[@]}" --collective nccl --summary-json "$OUT/dist-nccl.json"
        step dist-nccl-equals-local 10 python3 -c '
import json, sys
a, b = (json.load(open(sys.argv[i])) for i in (1, 2))
keys = ("final_loss", "test_auc", "test_logloss", "shard_bytes")
diff = [k for k in keys if a[k] != b[k]]
print({k: (a[k], b[k]) for k in keys})
sys.exit("NCCL differs from Local in " + ", ".join(diff) if diff else 0)' "$OUT/dist-local.json" "$OUT/dist-nccl.json"
    fi
fi

say "done in $(($(date +%s) - started)) s: $failed failed step(s); results in $OUT"
[ "$failed" = 0 ]
