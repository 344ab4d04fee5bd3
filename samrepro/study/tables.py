"""The paper's tables and figures as data: our runs beside the paper's numbers, with the
verdict on each claim (docs/method.md §7; the rules live in samrepro.study.claims). Every row runs
once per calibration seed of the settings and shows the mean with its 95% interval.
Notebooks call these and show what they return."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from samrepro.method.allocation import ALLOCATIONS, traces
from samrepro.study.claims import (FORMAT, TOLERANCE, above_all, achieved, document_scores,
                                   growing_gain, headline, higher_accuracy, keeps_sparsity,
                                   lower_perplexity, seed_free, verdict, window_nll)
from samrepro.errors import UserError
from samrepro.study.experiments import estimates_for
from samrepro.machine.hardware import default_device
from samrepro.io.models import layer_of
from samrepro.study.progress import track
from samrepro.study.report import paper_reference
from samrepro.study.settings import config, run_all
from samrepro.method.sensitivity import layer_sensitivity, spearman
from samrepro.study.stats import average_interval, mean_interval, perplexity_interval

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
    """Whether a run reads nothing that a seed draws (claims.seed_free: the dense model, and
    magnitude pruning at uniform sparsity without GPTQ)."""
    return seed_free(c)


def _name(label) -> str:
    """An arm's name in a result's `window_nll` and in its cells' `arms`."""
    return " ".join(str(x) for x in label) if isinstance(label, tuple) else str(label)


def _matched(s: dict, specs: dict, arms: dict, pairs, desc: str) -> dict:
    """The matched arms (docs/method.md §7): for each (A, B) of `pairs` whose achieved
    sparsities differ by more than claims.TOLERANCE and whose B is uniform, B's spec at A's
    achieved sparsity (rounded to 4 decimals), run once per seed like any arm.
    Returns {(A, B): (label of the matched arm, its runs)}; the label is B's with the target
    appended."""
    todo, wanted = {}, {}
    for a, b in pairs:
        x, y = achieved(arms[a]), achieved(arms[b])
        if x is None or y is None or abs(x - y) <= TOLERANCE \
                or specs[b].get("allocation", "uniform") != "uniform" or specs[b].get("nm"):
            continue
        target = round(x, 4)
        label = (*b, f"at {target:.4f}")
        todo[label] = {**specs[b], "sparsity": target}
        wanted[(a, b)] = label
    found = run_arms(s, todo, f"{desc} (matched sparsity)") if todo else {}
    return {pair: (label, found[label]) for pair, label in wanted.items()}


def _compare(arms: dict, matched: dict, ours: tuple, theirs: tuple, what: str,
             streams=PPL) -> tuple[list[dict], list[dict]]:
    """(cells, headline cells) of arm `ours` against `theirs`: per stream and the average
    over streams; with the matched pair's cells too when the two arms' sparsities differ
    (the unmatched cells then say `confounded`), and the headline from the matched pair."""
    cells = lower_perplexity(arms[ours], arms[theirs], streams, what, (_name(ours), _name(theirs)))
    heads = headline(arms[ours], arms[theirs], streams, what, (_name(ours), _name(theirs)))
    if (ours, theirs) in matched:
        label, runs = matched[(ours, theirs)]
        what = f"{what}, matched (baseline at {float(label[-1].split()[-1]):.2%})"
        cells += lower_perplexity(arms[ours], runs, streams, what, (_name(ours), _name(label)))
        heads = headline(arms[ours], runs, streams, what, (_name(ours), _name(label)))
    return cells, heads


def _claim(claim: str, statement: str, compared: list[tuple[list, list]]) -> dict:
    """A claim's record from _compare's (cells, headlines) pairs."""
    return verdict(claim, statement, [c for cells, _ in compared for c in cells],
                   [h for _, heads in compared for h in heads])


def _c0(arms: dict, target_of, label_of) -> dict:
    """C0 over every pruned arm of `arms`: achieved against target sparsity."""
    cells = [keeps_sparsity(runs, target_of(key), label_of(key)) for key, runs in arms.items()
             if target_of(key) > 0 and achieved(runs) is not None]
    return verdict("C0", "the allocation keeps the overall sparsity asked for (within 0.1 point)",
                   cells, chance=False)


def _data(df: pd.DataFrame, *groups: dict) -> pd.DataFrame:
    """`df` carrying the result's data for report.write (df.attrs["result"]): the format, and
    each arm's per-seed, per-window NLLs `window_nll` {arm: {stream: seeds × windows}} (and
    per-document scores for accuracy), from which every interval recomputes."""
    nll, scores = {}, {}
    for arms in groups:
        for key, runs in arms.items():
            name = _name(key)
            for stream, value in runs[0].get("perplexity", {}).items():
                if isinstance(value, dict) and "window_nll" in value:
                    nll.setdefault(name, {})[stream] = window_nll(runs, stream).tolist()
            for setting, tasks in runs[0].get("accuracy", {}).items():
                for task in tasks:
                    scores.setdefault(name, {}).setdefault(setting, {})[task] = \
                        document_scores(runs, setting, task).tolist()
    df.attrs["result"] = {"format": FORMAT, "window_nll": nll,
                          **({"document_scores": scores} if scores else {})}
    return df


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
    specs = {(m, a, sal): dict(model=m, sparsity=p, allocation=a, saliency=sal)
             for m in s["models"] for a, sal in combos}
    arms = run_arms(s, specs, "table 1")
    pairs = [((m, mixed, sal), (m, "uniform", sal)) for m in s["models"] for sal in ("obs", "isc")]
    matched = _matched(s, specs, arms, pairs, "table 1")
    df = pd.DataFrame([_row(r, model=m, allocation=a, saliency=sal, matched="")
                       for (m, a, sal), r in arms.items()]
                      + [_row(r, model=m, allocation=a, saliency=sal, matched=f"to {mixed}")
                         for (m, a, sal, _), r in matched.values()])
    name = "Algorithm 1 as printed" if mixed == "paper" else f"`{mixed}` allocation"
    claims = [
        _claim("C1", "ISC beats OBS at uniform sparsity",
               [_compare(arms, matched, (m, "uniform", "isc"), (m, "uniform", "obs"),
                         f"{m} isc vs obs") for m in s["models"]]),
        _claim(_c2(mixed), f"mixed ({name}) beats uniform, same saliency",
               [_compare(arms, matched, (m, mixed, sal), (m, "uniform", sal),
                         f"{m} {mixed} vs uniform ({sal})")
                for m in s["models"] for sal in ("obs", "isc")]),
        _c0(arms, lambda k: p, lambda k: f"{k[0]} {k[1]} ({k[2]}) at {p:.0%}"),
    ]
    return _data(df, arms, {label: runs for label, runs in matched.values()}), claims, \
        _paper("table1")


def table2(s: dict):
    """Dense, magnitude, SparseGPT, Wanda and the method at the first sparsity."""
    p = s["sparsities"][0]
    methods = {"dense": dict(sparsity=0.0), "magnitude": dict(sparsity=p, saliency="magnitude"),
               "wanda": dict(sparsity=p, saliency="wanda"),
               "sparsegpt": dict(sparsity=p, saliency="obs"),
               "ours": dict(sparsity=p, **_method(s)),
               "ours-exact": dict(sparsity=p, **{**_method(s), "allocation": "exact"})}
    specs = {(m, name): dict(model=m, **methods[name]) for m in s["models"] for name in methods}
    arms = run_arms(s, specs, "table 2")
    bases = (("magnitude", "magnitude pruning"), ("sparsegpt", "SparseGPT"))
    matched = _matched(s, specs, arms, [((m, "ours"), (m, base)) for m in s["models"]
                                        for base, _ in bases], "table 2")
    df = pd.DataFrame([_row(r, model=m, method=name, matched="") for (m, name), r in arms.items()]
                      + [_row(r, model=m, method=name, matched="to ours")
                         for (m, name, _), r in matched.values()])
    claims = [_claim(f"T2-{base}", f"the method beats {label}",
                     [_compare(arms, matched, (m, "ours"), (m, base), f"{m} ours vs {base}")
                      for m in s["models"]])
              for base, label in bases]
    claims.append(_c0({k: r for k, r in arms.items() if k[1] != "dense"}, lambda k: p,
                      lambda k: f"{k[0]} {k[1]} at {p:.0%}"))
    return _data(df, arms, {label: runs for label, runs in matched.values()}), claims, \
        _paper("table2")


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
                             f"{m} {setting}: ours-exact vs SparseGPT, average of the four tasks",
                             (_name((m, "ours-exact")), _name((m, "sparsegpt"))))
             for m in s["models"] for setting in settings]
    claims = [verdict("T3", "the method keeps more accuracy than SparseGPT (average of the "
                            "four tasks)", cells)]
    return _data(df, arms), claims, _paper("table3")


def table4(s: dict):
    """Joint sparsity and quantization: GPTQ 4/3-bit, SparseGPT + 4-bit, the method + 4-bit."""
    p = s["sparsities"][0]
    methods = {"dense": dict(sparsity=0.0), "gptq": dict(sparsity=0.0, wbits=4),
               "gptq-3bit": dict(sparsity=0.0, wbits=3),
               "sparsegpt+gptq": dict(sparsity=p, wbits=4),
               "ours+gptq": dict(sparsity=p, wbits=4, **_method(s))}
    specs = {(m, name): dict(model=m, **methods[name]) for m in s["models"] for name in methods}
    arms = run_arms(s, specs, "table 4")
    matched = _matched(s, specs, arms, [((m, "ours+gptq"), (m, "sparsegpt+gptq"))
                                        for m in s["models"]], "table 4")

    def row(results, m, name, sparsity, matched_to=""):
        bits = methods[name].get("wbits", 16)
        got = achieved(results) or 0.0
        return _row(results, model=m, method=name, sparsity=sparsity, wbits=bits,
                    ratio=round(16 / bits / (1 - sparsity), 2), matched=matched_to,
                    achieved_ratio=round(16 / bits / (1 - got), 3))

    df = pd.DataFrame([row(r, m, name, methods[name]["sparsity"]) for (m, name), r in arms.items()]
                      + [row(r, m, name, methods[name]["sparsity"], "to ours+gptq")
                         for (m, name, _), r in matched.values()])
    claims = [_claim("C4", "mixed + 4-bit beats SparseGPT + 4-bit at the same (achieved) ratio",
                     [_compare(arms, matched, (m, "ours+gptq"), (m, "sparsegpt+gptq"),
                               f"{m} ours+4bit vs sparsegpt+4bit") for m in s["models"]]),
              _c0({k: r for k, r in arms.items() if methods[k[1]]["sparsity"] > 0},
                  lambda k: p, lambda k: f"{k[0]} {k[1]} at {p:.0%}")]
    return _data(df, arms, {label: runs for label, runs in matched.values()}), claims, \
        _paper("table4")


def figure3(s: dict):
    """PTB perplexity against sparsity, per method (paper: 50% → 80%). The runs score every
    stream of the model, so that they are the very runs of the tables at the same sparsity."""
    sparsities = s["figure3_sparsities"]
    methods = {"magnitude": dict(saliency="magnitude"), "sparsegpt": dict(saliency="obs"),
               "ours": _method(s)}
    specs = {(m, name, p): dict(model=m, sparsity=p, **methods[name])
             for m in s["models"] for name in methods for p in sparsities}
    arms = run_arms(s, specs, "figure 3")
    matched = _matched(s, specs, arms, [((m, "ours", p), (m, "sparsegpt", p))
                                        for m in s["models"] for p in sparsities], "figure 3")
    df = pd.DataFrame([_row(r, model=m, method=name, sparsity=p)
                       for (m, name, p), r in arms.items()]
                      + [_row(r, model=m, method=f"{name} (matched to ours)", sparsity=p)
                         for (m, name, p, _), r in matched.values()])

    def base(m, p):
        pair = ((m, "ours", p), (m, "sparsegpt", p))
        return matched[pair] if pair in matched else (pair[1], arms[pair[1]])

    cells = [growing_gain({p: arms[(m, "ours", p)] for p in sparsities},
                          {p: base(m, p)[1] for p in sparsities}, "ptb",
                          f"{m} ours vs sparsegpt",
                          {p: (_name((m, "ours", p)), _name(base(m, p)[0])) for p in sparsities})
             for m in s["models"]]
    claims = [verdict("C3", "the method's advantage over SparseGPT grows with sparsity", cells),
              _c0({k: r for k, r in arms.items() if k[1] == "ours"}, lambda k: k[2],
                  lambda k: f"{k[0]} ours at {k[2]:.0%}")]
    return _data(df, arms, {label: runs for label, runs in matched.values()}), claims


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
        if all(name in e.get("samples", {}) for e in estimates):  # one list of probes a seed
            entry["samples"] = [e["samples"][name] for e in estimates]
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
        estimates, _ = estimates_for(cfg, estimators, s["data_dir"], device)
        for e in estimators:
            found[e].append(estimates[e])
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


def unit_samples(estimate: dict, unit_of, combine=np.sum) -> dict[str, list[np.ndarray]]:
    """Per-probe samples of groups of matrices ({unit: one array per seed}): each probe's
    values of the unit's matrices combined (`combine` over matrices: the sum for a layer, the
    mean for a matrix type over layers), so that units measured by the same probes stay
    paired. `unit_of(name)`: the unit of a matrix name. Needs the pooled estimate's samples."""
    grouped: dict[str, list] = {}
    for name, entry in estimate["matrices"].items():
        grouped.setdefault(unit_of(name), []).append(entry["samples"])
    return {unit: [combine(np.array([m[seed] for m in members]), axis=0)
                   for seed in range(len(members[0]))]
            for unit, members in grouped.items()}


def _probe_data(df: pd.DataFrame, samples: dict) -> pd.DataFrame:
    """`df` carrying the per-probe samples its claim was decided from (report.write)."""
    df.attrs["result"] = {"format": FORMAT, "probe_samples": {
        m: {unit: [np.asarray(x).tolist() for x in seeds] for unit, seeds in units.items()}
        for m, units in samples.items()}}
    return df


def figure1(s: dict):
    """Layer sensitivity over depth (the paper's Figure 1): per model the layer table and its
    estimates by every estimator; the C5 claim. Returns (df, claims, estimates by model)."""
    estimates = {m: sensitivities(s, m) for m in s["models"]}
    layers = {m: layer_table(e) for m, e in estimates.items()}
    df = pd.concat([d.assign(model=m) for m, d in layers.items()], ignore_index=True)
    samples = {m: unit_samples(e["hutchinson"], layer_of) for m, e in estimates.items()}
    return _probe_data(df, samples), [figure1_claim(samples)], estimates


def figure1_claim(samples_by_model: dict[str, dict[str, list]]) -> dict:
    """C5: the first and the last layer each rank above every middle layer, each difference
    decided from per-probe paired samples (claims.above_all); `samples_by_model`: {model:
    {layer, in depth order: one array of per-probe layer traces per seed}}."""
    cells = []
    for model, layers in samples_by_model.items():
        names = list(layers)
        for which, layer in (("first", names[0]), ("last", names[-1])):
            cells.append(above_all(layer, layers, names[1:-1],
                                   f"{model}: {which} layer above every middle layer:"))
    return verdict("C5", "layer sensitivity is U-shaped (first and last layers most sensitive)",
                   cells)


def figure2(s: dict):
    """Matrix sensitivity by type and layer (the paper's Figure 2): the per-matrix table of
    every model and the C6 claim. Returns (df, claims, matrix tables by model)."""
    estimates = {m: sensitivities(s, m) for m in s["models"]}
    matrices = {m: matrix_table(e) for m, e in estimates.items()}
    df = pd.concat([d.assign(model=m) for m, d in matrices.items()], ignore_index=True)
    samples = {m: unit_samples(e["hutchinson"], lambda n: n.rsplit(".", 1)[1], np.mean)
               for m, e in estimates.items()}
    return _probe_data(df, samples), [figure2_claim(samples)], matrices


def figure2_claim(samples_by_model: dict[str, dict[str, list]]) -> dict:
    """C6: v_proj and down_proj (OPT: fc2) each above every other matrix type but the pair's
    other member, by the mean trace over layers, from per-probe paired samples
    (`samples_by_model`: {model: {type: one array of per-probe mean traces per seed}})."""
    cells = []
    for model, by_type in samples_by_model.items():
        down = "fc2" if "fc2" in by_type else "down_proj"  # OPT's down projection is fc2
        for t, partner in (("v_proj", down), (down, "v_proj")):
            others = [o for o in by_type if o not in (t, partner)]
            cells.append(above_all(t, by_type, others,
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
    specs = {(m, p, a, sal): dict(model=m, sparsity=p, allocation=a, saliency=sal)
             for m in s["models"] for p in s["sparsities"] for a in ALLOCATIONS
             for sal in saliencies if a != "paper-code" or p < 0.8}
    arms = run_arms(s, specs, "allocations")
    pairs = [(mixed, base) for mixed in MIXED for base in ("uniform",)] \
        + [("exact", "random"), ("exact", "depth")]
    matched = _matched(s, specs, arms, [((m, p, mixed, sal), (m, p, base, sal))
                                        for m in s["models"] for p in s["sparsities"]
                                        for sal in saliencies for mixed, base in pairs
                                        if (m, p, mixed, sal) in arms], "allocations")
    df = pd.DataFrame([{**_row(r, model=m, sparsity=p, allocation=a, saliency=sal, matched=""),
                        "planned_sparsity": round(float(np.mean([x["planned_sparsity"] for x in r])), 4)}
                       for (m, p, a, sal), r in arms.items()]
                      + [{**_row(r, model=m, sparsity=p, allocation=a, saliency=sal,
                                 matched=f"to {mixed}"),
                          "planned_sparsity": round(float(np.mean([x["planned_sparsity"] for x in r])), 4)}
                         for ((_, _, mixed, _), (m, p, a, sal)), (_, r) in matched.items()])
    claims = []
    for mixed, base in pairs:
        compared = [_compare(arms, matched, (m, p, mixed, sal), (m, p, base, sal),
                             f"{m} {p:.0%} {mixed} vs {base} ({sal})")
                    for m in s["models"] for p in s["sparsities"] for sal in saliencies
                    if (m, p, mixed, sal) in arms]
        label = _c2(mixed) if base == "uniform" else f"control-{base}"
        claims.append(_claim(label, f"`{mixed}` allocation beats {base}", compared))
    claims.append(_c0(arms, lambda k: k[1], lambda k: f"{k[0]} {k[2]} ({k[3]}) at {k[1]:.0%}"))
    return _data(df, arms, {label: runs for label, runs in matched.values()}), claims
