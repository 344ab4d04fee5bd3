#!/usr/bin/env bash
# A check of samrepro on a machine with one CUDA GPU and the Hugging Face hub: under 10 minutes.
#
#     bash benchmarks/gpu_check.sh            # after: pip install -e '.[dev]' (see README)
#
# It needs nothing but the hub (no local data folder: SAMREPRO_DATA_DIR is ignored) and prints
# PASS/FAIL per step with its time, then "N passed, N failed". Steps:
#   gpu        the GPU torch sees, its bf16 support and the dtype `auto` picks
#   plan       `samrepro plan` for the model at the reduced sizes below (its times are compared
#              with the measured ones at the end)
#   hub-data   every corpus split and lm-eval task dataset the package uses loads through
#              `datasets` (no dataset scripts), with its row count
#   precision  the Hutchinson estimate in the GPU's dtype (bf16, or fp16 with the loss scale)
#              against fp32 with the same probes; 1 process against 2 under torchrun if there
#              are 2 GPUs, and the model split over 2 GPUs (device_map) against one
#   table1     notebooks/table1.ipynb at the paper preset for the model at reduced sizes
#              (32 calibration windows of 2048, 16 probes, 16 evaluation windows a stream)
# Logs and results go to $OUT (default ./gpu-check). MODEL (default facebook/opt-125m) names
# the model. For a dry run on a CPU (the test suite does this), DRY=1 uses the tiny model and
# the local data folder in $SAMREPRO_DATA_DIR, and skips table1.
set -u
cd "$(dirname "$0")/.."
MODEL=${MODEL:-facebook/opt-125m}
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export SAMREPRO_CACHE_DIR="$OUT/cache" SAMREPRO_RESULTS_DIR="$OUT/results"
if [ "${DRY:-0}" = 1 ]; then
  MODEL=tiny-opt SEQLEN=64 NSAMPLES=4 PROBES=4 WINDOWS=2 DEVICE=cpu
else
  unset SAMREPRO_DATA_DIR
  SEQLEN=2048 NSAMPLES=32 PROBES=16 WINDOWS=16 DEVICE=cuda
fi
export MODEL SEQLEN NSAMPLES PROBES WINDOWS DEVICE OUT
passed=0 failed=0

step() {  # step NAME COMMAND...: run it, log it, print PASS/FAIL and its time
  local name=$1 start=$SECONDS
  shift
  if "$@" > "$OUT/$name.log" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); echo "FAIL $name ($((SECONDS - start)) s): see $OUT/$name.log"
    tail -n 3 "$OUT/$name.log" | sed 's/^/     /'
  fi
  echo "$name $((SECONDS - start))" >> "$OUT/seconds.txt"
}
: > "$OUT/seconds.txt"

step gpu "$PY" - <<'EOF'
import os, torch
from samrepro import plan
if os.environ["DEVICE"] == "cuda":
    assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
machine = plan.this_machine(os.environ["DEVICE"])
print("GPUs:", [(g.name, round(g.memory / 2**30, 1), "bf16" if g.bf16 else "no bf16")
                for g in machine.gpus] or "none (CPU)")
print("dtype auto:", plan.resolve_dtype("auto", machine), "| torch", torch.__version__)
EOF

step plan "$PY" -m samrepro.cli plan --model "$MODEL" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" \
  --probes "$PROBES" --eval-windows "$WINDOWS" --lm-eval --json "$OUT/plan.json"
cat "$OUT/plan.log"

step hub-data "$PY" - <<'EOF'
import os
from samrepro import data
for name, split in (("wikitext2", "test"), ("ptb", "test"), ("ptb", "train"),
                    ("c4", "validation"), ("c4", "train")):
    corpus = data.load_corpus(name, split)
    assert len(corpus.docs) > 500, (name, split, len(corpus.docs))
    print(f"{name:10s} {split:10s} {len(corpus.docs):8d} rows from {corpus.source}")
if os.environ.get("DRY") != "1":
    import datasets
    for path, config, split in (("allenai/ai2_arc", "ARC-Challenge", "test"),
                                ("Rowan/hellaswag", None, "validation"),
                                ("truthfulqa/truthful_qa", "multiple_choice", "validation"),
                                ("baber/piqa", None, "validation")):
        rows = datasets.load_dataset(path, config, split=split)
        print(f"{path:25s} {split:10s} {len(rows):8d} rows")
for what, weight in data.HUB_DOWNLOADS.items():
    print(f"  {what}: {weight}")
EOF

step precision "$PY" - <<'EOF'
import os, subprocess, sys, json, torch
from scipy.stats import spearmanr
from samrepro import plan
from samrepro.data import calibration_windows
from samrepro.models import load_model
from samrepro.sensitivity import hutchinson

device, model_name = os.environ["DEVICE"], os.environ["MODEL"]
machine = plan.this_machine(device)
low = plan.resolve_dtype("auto", machine)
seqlen = min(int(os.environ["SEQLEN"]), 512)
model, tok = load_model(model_name, torch.float32)
windows, _ = calibration_windows("c4", tok, 2, seqlen, 0)
settings = dict(rel_tol=0.0, min_probes=4, max_probes=4, seed=0, progress=False)
ref = hutchinson(model.to(device), windows, **settings)["matrices"]
model.to(low)
got = hutchinson(model, windows, **settings)
names = list(ref)
a = [ref[n]["trace"] for n in names]
b = [got["matrices"][n]["trace"] for n in names]
rel = sorted(abs(x - y) / max(abs(x), 1e-30) for x, y in zip(a, b))
rho = spearmanr(a, b).statistic
print(f"{low} against float32, same probes: Spearman {rho:.4f}, median relative difference "
      f"{rel[len(rel) // 2]:.3%}, loss scale {got['precision']['loss_scale']}")
# the weights themselves are rounded to the low dtype too: a few % apart is expected; an
# underflow shows as zeros and a rank order lost
assert rho > 0.95 and rel[len(rel) // 2] < 0.10
assert sum(x == 0 for x in b) <= sum(x == 0 for x in a)  # nothing underflowed to 0
if device == "cuda" and torch.cuda.device_count() >= 2:
    with plan.placed(model, {"devices": ["cuda:0", "cuda:1"]}):
        split = hutchinson(model, windows, **settings)["matrices"]
    worst = max(abs(split[n]["trace"] - got["matrices"][n]["trace"]) /
                max(abs(got["matrices"][n]["trace"]), 1e-30) for n in names)
    print(f"split over 2 GPUs against 1: largest relative difference {worst:.2e}")
    assert worst < 1e-2
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
           "samrepro.distributed", "--model", model_name, "--nsamples", "2", "--seqlen",
           str(seqlen), "--probes", "4", "--rel-tol", "0", "--dtype", "float32", "--quiet",
           "--json", os.path.join(os.environ["OUT"], "torchrun.json")]
    subprocess.run(cmd, check=True)
    two = json.load(open(os.path.join(os.environ["OUT"], "torchrun.json")))["matrices"]
    worst = max(abs(two[n]["trace"] - ref[n]["trace"]) / max(abs(ref[n]["trace"]), 1e-30)
                for n in names)
    print(f"torchrun, 2 processes, against 1 process (fp32): largest relative difference {worst:.2e}")
    assert worst < 1e-3
EOF

if [ "${DRY:-0}" != 1 ]; then
  step table1 "$PY" -m papermill --cwd notebooks notebooks/table1.ipynb "$OUT/table1.ipynb" \
    -p preset paper -p models "[\"$MODEL\"]" -p nsamples "$NSAMPLES" -p probes "$PROBES" \
    -p eval_windows "$WINDOWS" -p output_dir "$OUT/results"
  "$PY" - <<'EOF'
import json, os
out = os.environ["OUT"]
seconds = dict(line.split() for line in open(os.path.join(out, "seconds.txt")))
plan = json.load(open(os.path.join(out, "plan.json")))["plans"][0]
steps = {s["name"]: s["seconds"] for s in plan["steps"]}
runs = 4  # table 1: uniform and mixed × OBS and ISC
planned = steps.get("Hutchinson", 0) + runs * sum(v for k, v in steps.items()
                                                  if k not in ("Hutchinson", "lm-eval"))
measured = float(seconds.get("table1", "nan"))
print(f"table1: measured {measured:.0f} s, planned {planned:.0f} s of compute (the plan leaves "
      f"out loading and downloads): ratio {measured / max(planned, 1e-9):.1f}")
EOF
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
