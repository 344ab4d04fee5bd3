"""The paper's tables and figures as data: our runs beside the paper's numbers, with the
verdict on each claim (docs/method.md §7; the rules live in samrepro.claims). Every row runs
once per calibration seed of the settings and shows the mean with its 95% interval.
Notebooks call these and show what they return."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .allocation import ALLOCATIONS, traces
from .claims import (above_all, document_scores, growing_gain, higher_accuracy,
                     lower_perplexity, verdict, window_nll)
from .data import calibration_windows
from .errors import UserError
from .experiments import load, needs_calibration, sensitivity_for
from .hardware import default_device
from .models import layer_of
from .progress import track
from .report import paper_reference
from .settings import config, run_all
from .sensitivity import layer_sensitivity, spearman
from .stats import average_interval, mean_interval, perplexity_interval

PPL = ("wikitext2", "ptb", "c4")


def run_arms(s: dict, arms: dict[tuple, dict], desc: str) -> dict[tuple, list[dict]]:
    """Run every arm (label → RunConfig fields, `model` among them) once per seed of the
    settings: label → its runs in seed order. Arms share seeds, hence calibration windows.
    An arm that depends on no seed runs once (its row says 1 seed); a comparison with it pairs
    that one run with each seed of the other arm (claims.window_nll broadcasts)."""
    def build(label, seed):
        return config(s, arms[label]["model"], seed=seed,
                      **{k: v for k, v in arms[label].items() if k != "model"})

    flat = [(label, seed) for label in arms
            for seed in range(1 if _seed_free(build(label, 0)) else s["seeds"])]
    configs = [build(label, seed) for label, seed in flat]
    configs = track(configs, desc)  # one line a run on stderr: model, arm, seed, time left
    found: dict[tuple, list[dict]] = {}
    for (label, _), result in zip(flat, run_all(s, configs, desc=desc)):
        found.setdefault(label, []).append(result)
    return found


def _seed_free(c) -> bool:
    """Whether a run reads nothing that a seed draws (calibration windows, probes), so that
    every seed gives the same run: the dense model, and magnitude pruning at uniform sparsity
    (pipeline.prune_model: no forward passes; measured identical weights over seeds)."""
    uniform = c.allocation == "uniform" or c.nm is not None
    return not needs_calibration(c) or (c.saliency == "magnitude" and uniform)


def _row(results: list[dict], **labels) -> dict:
    """One arm's row: mean achieved sparsity, and per stream the perplexity exp(mean NLL)
    over seeds and windows with its 95% interval (`<stream>_low`, `<stream>_high`)."""
    row = {**labels, "seeds": len(results),
           "achieved_sparsity": round(float(np.mean([r["achieved_sparsity"] for r in results])), 4)}
    for stream in results[0]["perplexity"]:
        i = perplexity_interval(window_nll(results, stream))
        row.update({stream: i.estimate, f"{stream}_low": i.low, f"{stream}_high": i.high})
    return row


def _paper(table: str) -> pd.DataFrame:
    return pd.DataFrame(paper_reference()["paper"][table]["rows"])


def _method(s: dict) -> dict:
    """The saliency and allocation of "ours" (the notebook's parameters; presets.METHOD)."""
    return {"saliency": s["saliency"], "allocation": s["allocation"]}


def _c2(mixed: str) -> str:
    """Claim C2's label for one mixed allocation: C2 for Algorithm 1 as printed, else C2-<name>."""
    return "C2" if mixed == "paper" else f"C2-{mixed}"


def _beats(arms, model, ours: tuple, theirs: tuple, what: str, streams=PPL) -> list[dict]:
    """lower_perplexity of arm (model, *ours) against (model, *theirs)."""
    return lower_perplexity(arms[(model, *ours)], arms[(model, *theirs)], streams,
                            f"{model} {what}")


def table1(s: dict):
    """Uniform vs mixed allocation × OBS vs ISC at the first sparsity (paper: 50%).

    The mixed rows use the settings' allocation: `paper` (Algorithm 1 as printed, the
    default, docs/method.md §4) or any other mixed one (`-p allocation exact`);
    allocations.ipynb sets them all side by side.
    """
    p, mixed = s["sparsities"][0], s["allocation"]
    if mixed not in ALLOCATIONS or mixed == "uniform":
        raise UserError(f"Table 1 sets uniform against a mixed allocation: choose allocation "
                        f"from {', '.join(a for a in ALLOCATIONS if a != 'uniform')}")
    combos = [(alloc, sal) for alloc in ("uniform", mixed) for sal in ("obs", "isc")]
    arms = run_arms(s, {(m, a, sal): dict(model=m, sparsity=p, allocation=a, saliency=sal)
                         for m in s["models"] for a, sal in combos}, "table 1")
    df = pd.DataFrame([_row(r, model=m, allocation=a, saliency=sal)
                       for (m, a, sal), r in arms.items()])
    name = "Algorithm 1 as printed" if mixed == "paper" else f"`{mixed}` allocation"
    claims = [
        verdict("C1", "ISC beats OBS at uniform sparsity",
                [c for m in s["models"] for c in _beats(arms, m, ("uniform", "isc"),
                                                        ("uniform", "obs"), "isc vs obs")]),
        verdict(_c2(mixed), f"mixed ({name}) beats uniform, same saliency",
                [c for m in s["models"] for sal in ("obs", "isc") for c in _beats(
                    arms, m, (mixed, sal), ("uniform", sal), f"{mixed} vs uniform ({sal})")]),
    ]
    return df, claims, _paper("table1")


def table2(s: dict):
    """Dense, magnitude, SparseGPT, Wanda and the method at the first sparsity."""
    p = s["sparsities"][0]
    methods = {"dense": dict(sparsity=0.0), "magnitude": dict(sparsity=p, saliency="magnitude"),
               "wanda": dict(sparsity=p, saliency="wanda"),
               "sparsegpt": dict(sparsity=p, saliency="obs"),
               "ours": dict(sparsity=p, **_method(s)),
               "ours-exact": dict(sparsity=p, **{**_method(s), "allocation": "exact"})}
    arms = run_arms(s, {(m, name): dict(model=m, **methods[name]) for m in s["models"]
                         for name in methods}, "table 2")
    df = pd.DataFrame([_row(r, model=m, method=name) for (m, name), r in arms.items()])
    claims = [verdict(f"T2-{base}", f"the method beats {label}",
                      [c for m in s["models"] for c in _beats(arms, m, ("ours",), (base,),
                                                              f"ours vs {base}")])
              for base, label in (("magnitude", "magnitude pruning"), ("sparsegpt", "SparseGPT"))]
    return df, claims, _paper("table2")


ACCURACY = {"arc_challenge": "arc", "hellaswag": "hellaswag", "truthfulqa_mc2": "truthfulqa",
            "piqa": "piqa"}  # the tasks and the paper's column names


def table3(s: dict):
    """Accuracy (%) of dense, SparseGPT and the method (ISC + exact allocation) at the first
    sparsity, in the preset's settings (docs/method.md §6: the paper's dense rows are the
    leaderboard's), on the first `zero_shot_limit` documents of each task: the mean over seeds
    and documents with its 95% interval (`<task>_low`, `<task>_high`; the average over the
    four tasks likewise). T3 pairs the arms per seed and document (claims.higher_accuracy)."""
    if s["zero_shot_limit"] is not None and s["zero_shot_limit"] < 2:
        raise UserError(f"Table 3's intervals need at least 2 documents a task, got "
                        f"zero_shot_limit={s['zero_shot_limit']}: set 2 or more (None: all)")
    p = s["sparsities"][0]
    methods = {"dense": dict(sparsity=0.0), "sparsegpt": dict(sparsity=p, saliency="obs"),
               "ours-exact": dict(sparsity=p, **{**_method(s), "allocation": "exact"})}
    settings = tuple(s["zero_shot_settings"])
    arms = run_arms(s, {(m, name): dict(model=m, eval=(), tasks=tuple(ACCURACY),
                                        settings=settings, limit=s["zero_shot_limit"],
                                        **methods[name])
                         for m in s["models"] for name in methods}, "table 3")
    rows = []
    for (m, name), results in arms.items():
        for setting in settings:
            row = {"model": m, "method": name, "setting": setting, "seeds": len(results),
                   "achieved_sparsity": round(float(np.mean([r["achieved_sparsity"] for r in results])), 4)}
            scores = {task: document_scores(results, setting, task) for task in ACCURACY}
            for column, i in [*((ACCURACY[t], mean_interval(x)) for t, x in scores.items()),
                              ("avg", average_interval(list(scores.values())))]:
                row.update({column: i.estimate, f"{column}_low": i.low, f"{column}_high": i.high})
            row["documents"] = min(x.shape[1] for x in scores.values())
            rows.append(row)
    df = pd.DataFrame(rows)
    cells = [higher_accuracy(arms[(m, "ours-exact")], arms[(m, "sparsegpt")], setting, ACCURACY,
                             f"{m} {setting}: ours-exact vs SparseGPT, average of the four tasks")
             for m in s["models"] for setting in settings]
    claims = [verdict("T3", "the method keeps more accuracy than SparseGPT (average of the "
                            "four tasks)", cells)]
    return df, claims, _paper("table3")


def table4(s: dict):
    """Joint sparsity and quantization: GPTQ 4/3-bit, SparseGPT + 4-bit, the method + 4-bit."""
    p = s["sparsities"][0]
    methods = {"dense": dict(sparsity=0.0), "gptq": dict(sparsity=0.0, wbits=4),
               "gptq-3bit": dict(sparsity=0.0, wbits=3),
               "sparsegpt+gptq": dict(sparsity=p, wbits=4),
               "ours+gptq": dict(sparsity=p, wbits=4, **_method(s))}
    arms = run_arms(s, {(m, name): dict(model=m, **methods[name]) for m in s["models"]
                         for name in methods}, "table 4")
    rows = []
    for (m, name), results in arms.items():
        bits, sparsity = methods[name].get("wbits", 16), methods[name]["sparsity"]
        rows.append(_row(results, model=m, method=name, sparsity=sparsity, wbits=bits,
                         ratio=round(16 / bits / (1 - sparsity), 2)))
    df = pd.DataFrame(rows)
    claims = [verdict("C4", "mixed + 4-bit beats SparseGPT + 4-bit at the same ratio",
                      [c for m in s["models"] for c in _beats(
                          arms, m, ("ours+gptq",), ("sparsegpt+gptq",), "ours+4bit vs sparsegpt+4bit")])]
    return df, claims, _paper("table4")


def figure3(s: dict):
    """PTB perplexity against sparsity, per method (paper: 50% → 80%). The runs score every
    stream of the model, so that they are the very runs of the tables at the same sparsity."""
    sparsities = s["figure3_sparsities"]
    methods = {"magnitude": dict(saliency="magnitude"), "sparsegpt": dict(saliency="obs"),
               "ours": _method(s)}
    arms = run_arms(s, {(m, name, p): dict(model=m, sparsity=p, **methods[name])
                         for m in s["models"] for name in methods for p in sparsities}, "figure 3")
    df = pd.DataFrame([_row(r, model=m, method=name, sparsity=p)
                       for (m, name, p), r in arms.items()])
    cells = [growing_gain({p: arms[(m, "ours", p)] for p in sparsities},
                          {p: arms[(m, "sparsegpt", p)] for p in sparsities}, "ptb",
                          f"{m} ours vs sparsegpt") for m in s["models"]]
    return df, [verdict("C3", "the method's advantage over SparseGPT grows with sparsity", cells)]


def _pooled(estimates: list[dict]) -> dict:
    """Per-matrix estimates of several seeds as one: the mean, and the standard error of the
    mean of independent estimates (sqrt(Σ SE²)/S); estimates without errors keep none."""
    names = estimates[0]["matrices"]
    pooled = {}
    for name in names:
        entries = [e["matrices"][name] for e in estimates]
        entry = {"trace": float(np.mean([x["trace"] for x in entries]))}
        if all(x.get("stderr") is not None for x in entries):
            entry["stderr"] = math.sqrt(sum(x["stderr"] ** 2 for x in entries)) / len(entries)
        pooled[name] = entry
    first = estimates[0]
    return {**{k: v for k, v in first.items() if k != "matrices"}, "matrices": pooled,
            "seeds": len(estimates),
            "probes": sum(e.get("probes", 0) for e in estimates),
            "seconds": sum(e.get("seconds", 0.0) for e in estimates)}


def sensitivities(s: dict, model_spec: str, estimators=("hutchinson", "fisher", "xxt")) -> dict:
    """Per-matrix sensitivity of one model by each estimator (cached), pooled over the
    settings' seeds (each seed: its own calibration windows and Hutchinson probes)."""
    device = default_device(s["device"])
    found: dict[str, list[dict]] = {e: [] for e in estimators}
    for seed in range(s["seeds"]):
        cfg = config(s, model_spec, sparsity=0.0, seed=seed)
        model, tokenizer = load(cfg, device)
        windows, corpus = calibration_windows(cfg.calib, tokenizer, cfg.nsamples, cfg.seqlen,
                                              cfg.seed, s["data_dir"])
        for e in estimators:
            found[e].append(sensitivity_for(cfg, model, windows, corpus, e, device))
    return {e: _pooled(found[e]) for e in estimators}


def layer_table(estimates: dict) -> pd.DataFrame:
    """Layer-level sensitivity (sum of the layer's matrices) with its standard error."""
    main = estimates["hutchinson"]["matrices"]
    rows = {}
    for name, entry in main.items():
        row = rows.setdefault(layer_of(name), {"layer": layer_of(name), "trace": 0.0, "var": 0.0})
        row["trace"] += entry["trace"]
        row["var"] += entry.get("stderr", 0.0) ** 2
    df = pd.DataFrame(rows.values())
    df["stderr"] = df.pop("var") ** 0.5
    df.insert(0, "index", range(len(df)))
    for proxy in ("fisher", "xxt"):
        if proxy in estimates:
            df[proxy] = list(layer_sensitivity(traces(estimates[proxy])).values())
    return df


def matrix_table(estimates: dict) -> pd.DataFrame:
    """Per-matrix sensitivity by type and layer, with every estimator beside Hutchinson's."""
    rows = []
    for name, entry in estimates["hutchinson"]["matrices"].items():
        row = {"matrix": name, "layer": int(layer_of(name).rsplit(".", 1)[1]),
               "type": name.rsplit(".", 1)[1], "trace": entry["trace"],
               "stderr": entry.get("stderr")}
        for proxy in ("fisher", "xxt"):
            if proxy in estimates:
                row[proxy] = estimates[proxy]["matrices"][name]["trace"]
        rows.append(row)
    return pd.DataFrame(rows)


def figure1(s: dict):
    """Layer sensitivity over depth (the paper's Figure 1): per model the layer table and its
    estimates by every estimator; the C5 claim. Returns (df, claims, estimates by model)."""
    estimates = {m: sensitivities(s, m) for m in s["models"]}
    layers = {m: layer_table(e) for m, e in estimates.items()}
    df = pd.concat([d.assign(model=m) for m, d in layers.items()], ignore_index=True)
    return df, [figure1_claim(layers)], estimates


def figure1_claim(layers_by_model: dict[str, pd.DataFrame]) -> dict:
    """C5: the first and the last layer each rank above every middle layer, decided from
    the layer traces' standard errors (pooled over probes, windows and seeds)."""
    cells = []
    for model, layers in layers_by_model.items():
        layers = layers.sort_values("index")
        middle = {r.layer: (r.trace, r.stderr) for r in layers.iloc[1:-1].itertuples()}
        for which, r in (("first", layers.iloc[0]), ("last", layers.iloc[-1])):
            cells.append(above_all(r["trace"], r["stderr"], middle,
                                   f"{model}: {which} layer above every middle layer:"))
    return verdict("C5", "layer sensitivity is U-shaped (first and last layers most sensitive)",
                   cells)


def figure2(s: dict):
    """Matrix sensitivity by type and layer (the paper's Figure 2): the per-matrix table of
    every model and the C6 claim. Returns (df, claims, matrix tables by model)."""
    matrices = {m: matrix_table(sensitivities(s, m)) for m in s["models"]}
    df = pd.concat([d.assign(model=m) for m, d in matrices.items()], ignore_index=True)
    return df, [figure2_claim(matrices)], matrices


def figure2_claim(matrices_by_model: dict[str, pd.DataFrame]) -> dict:
    """C6: v_proj and down_proj (OPT: fc2) each above every other matrix type but the pair's
    other member, by the mean trace over layers and its standard error."""
    cells = []
    for model, matrices in matrices_by_model.items():
        by_type = {t: (part["trace"].mean(), math.sqrt((part["stderr"] ** 2).sum()) / len(part))
                   for t, part in matrices.groupby("type", sort=False)}
        down = "fc2" if "fc2" in by_type else "down_proj"  # OPT's down projection is fc2
        for t, partner in (("v_proj", down), (down, "v_proj")):
            others = {o: v for o, v in by_type.items() if o not in (t, partner)}
            cells.append(above_all(*by_type[t], others,
                                   f"{model}: {t} above every type but {partner}:"))
    return verdict("C6", "v_proj and down_proj are the most sensitive matrix types", cells)


def proxy_correlations(matrices: pd.DataFrame) -> dict[str, float]:
    """Spearman rank correlation of each proxy with the Hutchinson estimate, over matrices."""
    main = dict(zip(matrices["matrix"], matrices["trace"]))
    return {proxy: spearman(dict(zip(matrices["matrix"], matrices[proxy])), main)
            for proxy in ("fisher", "xxt") if proxy in matrices}


MIXED = ("paper", "exact", "layer", "owl", "paper-code", "random", "depth")


def allocations(s: dict):
    """Every allocation (the paper's, the authors' code's, OWL and the two controls) ×
    saliency at every sparsity of the preset: planned and achieved sparsity, perplexities;
    each against uniform, and the trace-based `exact` against the controls."""
    saliencies = s["allocation_saliencies"]
    arms = run_arms(s, {(m, p, a, sal): dict(model=m, sparsity=p, allocation=a, saliency=sal)
                         for m in s["models"] for p in s["sparsities"] for a in ALLOCATIONS
                         for sal in saliencies if a != "paper-code" or p < 0.8}, "allocations")
    df = pd.DataFrame([{**_row(r, model=m, sparsity=p, allocation=a, saliency=sal),
                        "planned_sparsity": round(float(np.mean([x["planned_sparsity"] for x in r])), 4)}
                       for (m, p, a, sal), r in arms.items()])
    claims = []
    for mixed, base in [(a, "uniform") for a in MIXED] + [("exact", "random"), ("exact", "depth")]:
        cells = [c for m in s["models"] for p in s["sparsities"] for sal in saliencies
                 if (m, p, mixed, sal) in arms
                 for c in _beats(arms, m, (p, mixed, sal), (p, base, sal),
                                 f"{p:.0%} {mixed} vs {base} ({sal})")]
        label = _c2(mixed) if base == "uniform" else f"control-{base}"
        claims.append(verdict(label, f"`{mixed}` allocation beats {base}", cells))
    return df, claims
