"""The progress lines of a notebook's runs: one a run, naming it, with runs done of total and a
time-left estimate that counts only computed runs (samrepro.study.progress)."""

import io

from samrepro.study.experiments import RunConfig
from samrepro.study.progress import Tracked, describe, duration, time_left


def test_durations_read_as_a_person_would_write_them():
    assert duration(42.4) == "42 s"
    assert duration(190) == "3 min 10 s"
    assert duration(3720) == "1 h 2 min"


def test_a_run_is_named_by_model_arm_and_seed():
    assert describe(RunConfig("embedded", 0.5, "isc", "paper", seed=2)) == \
        "embedded · paper isc 50% · seed 2"
    assert describe(RunConfig("smoke-opt", 0.0, seed=0, num_layers=2)) == \
        "smoke-opt@2 · dense · seed 0"
    assert describe(RunConfig("embedded", 0.5, "obs", wbits=4, seed=1)) == \
        "embedded · uniform obs 50% 4-bit · seed 1"
    assert describe(RunConfig("embedded", 0.5, "obs", nm=(2, 4))) == "embedded · obs 2:4 · seed 0"


def test_time_left_ignores_cached_runs():
    assert time_left([0.01, 0.02], 3) == "time left: known after the first computed run"
    assert time_left([0.01, 100.0, 200.0], 4) == "about 10 min 0 s left"  # 150 s × 4
    assert time_left([100.0], 0) == ""


def test_one_line_a_run_and_a_last_line_with_a_fake_clock():
    ticks = iter([0, 0, 60, 60.5, 180, 180])  # start, then one reading a run, then the end
    out = io.StringIO()
    configs = [RunConfig("embedded", 0.5, "obs", seed=s) for s in range(3)]
    tracked = Tracked(configs, "table 1", stream=out, clock=lambda: next(ticks))
    assert len(tracked) == 3 and tracked[1] is configs[1]
    assert list(tracked) == configs
    lines = [line.lstrip("\r").rstrip() for line in out.getvalue().split("\n") if line.strip()]
    assert lines == [
        "table 1 · run 1 of 3 · embedded · uniform obs 50% · seed 0 · "
        "time left: known after the first computed run",
        "table 1 · run 2 of 3 · embedded · uniform obs 50% · seed 1 · 1 done in 1 min 0 s · "
        "about 2 min 0 s left",  # one computed run of 60 s, two to go
        "table 1 · run 3 of 3 · embedded · uniform obs 50% · seed 2 · 2 done in 1 min 0 s · "
        "about 1 min 0 s left",  # the second run (0.5 s) came from the cache
        "table 1 · 3 runs done in 3 min 0 s",
    ]


def test_tables_run_arms_reports_every_run(monkeypatch, capsys):
    """The hook in tables.run_arms: one line on stderr a run, in the order they run."""
    from samrepro.study import tables

    seen = []
    monkeypatch.setattr(tables, "run_all", lambda s, configs, desc: [
        seen.append(c) or {"seed": c.seed} for c in configs])
    s = {"seeds": 2, "nsamples": 4, "seqlen": 32, "eval_windows": 2, "batch_size": 1,
         "estimator": "fisher", "probes": 2, "rel_tol": 1.0, "alpha": None}
    arms = {"a": dict(model="tiny-llama", sparsity=0.5, saliency="isc"),
            "dense": dict(model="tiny-llama", sparsity=0.0)}
    found = tables.run_arms(s, arms, "test")
    assert [r["seed"] for r in found["a"]] == [0, 1] and len(found["dense"]) == 1
    err = [line.strip() for line in capsys.readouterr().err.split("\n") if line.strip()]
    assert [line.split(" · ")[1] for line in err[:3]] == ["run 1 of 3", "run 2 of 3", "run 3 of 3"]
    assert "tiny-llama · dense · seed 0" in err[2] and err[-1].startswith("test · 3 runs done")
