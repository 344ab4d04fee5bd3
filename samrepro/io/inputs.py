"""What a notebook's results were computed from: every model's weights (name, revision, sha256
of the dense weights as loaded) and every text (its source and the sha256 of the file, or the
hub dataset's revision), gathered from the runs' own records (samrepro.study.experiments) so that a
results file names its inputs as the README promises:

    "inputs": {"models": {"embedded": {"revision": …, "weights_sha256": "…"}},
               "data": {"local:ptb/ptb.test.txt": {"sha256": "…", "revision": null}, …}}
"""

from __future__ import annotations


def summary(runs: list[dict]) -> dict:
    """The distinct models and data sources of `runs` (run results as experiments.run returns
    them). A name met with two different hashes keeps both, so a mix-up is visible."""
    models: dict[str, list[dict]] = {}
    data: dict[str, list[dict]] = {}

    def add(found: dict, name, entry: dict) -> None:
        if name and entry not in found.setdefault(name, []):
            found[name].append(entry)

    for run in runs:
        model = run.get("model") or {}
        add(models, model.get("name"), {k: model.get(k) for k in ("revision", "weights_sha256")})
        texts = [run.get("calibration_data") or {}]
        texts += [v for v in (run.get("perplexity") or {}).values() if isinstance(v, dict)]
        for text in texts:
            add(data, text.get("source"), {k: text.get(k) for k in ("sha256", "revision")})
    single = lambda found: {k: v[0] if len(v) == 1 else v for k, v in sorted(found.items())}
    return {"models": single(models), "data": single(data)}


def record(s: dict, runs: list[dict]) -> None:
    """Keep what `runs` were computed from in the settings `s` (settings.run_all calls this)."""
    s.setdefault("runs_inputs", []).extend(
        {"model": r.get("model"), "calibration_data": r.get("calibration_data"),
         "perplexity": r.get("perplexity")} for r in runs)


def of(s: dict) -> dict | None:
    """The inputs of every run made under the settings `s` (report.write stores them)."""
    return summary(s["runs_inputs"]) if s.get("runs_inputs") else None
