"""One configuration (samrepro.config.RunConfig): each value is checked by one function of
samrepro.checks, and every route (the CLI, a notebook's settings, the torchrun entry) meets
that check, with its message in the route's spelling (`--nsamples`, `nsamples`), before
anything is loaded."""

import traceback

import pytest

from samrepro.study import settings
from samrepro.commands.cli import main as cli_main
from samrepro.config import RunConfig
from samrepro.commands.distributed import main as torchrun_main
from samrepro.errors import UserError

BAD = [  # field, bad value, the message's words
    ("sparsity", 1.2, "[0, 1)"),
    ("sparsity", float("nan"), "[0, 1)"),
    ("saliency", "obd", "unknown saliency"),
    ("allocation", "greedy", "unknown allocation"),
    ("alpha", 0.9, "too wide"),
    ("alpha", -0.1, "alpha must be in [0, 1)"),
    ("estimator", "owl", "unknown estimator"),
    ("nm", (4, 4), "0 < N < M"),
    ("wbits", 1, "wbits"),
    ("calib", "pile", "unknown dataset"),
    ("eval", ("wikitext103",), "unknown dataset"),
    ("nsamples", 0, "nsamples must be a whole number of at least 1"),
    ("seqlen", -5, "seqlen must be a whole number of at least 1"),
    ("batch_size", 0, "batch_size must be a whole number of at least 1"),
    ("eval_windows", 0, "eval_windows must be a whole number of at least 1"),
    ("seed", -1, "seed must be a whole number of at least 0"),
    ("probes", 1, "probes must be a whole number of at least 2"),
    ("rel_tol", -0.5, "rel_tol must be a number ≥ 0"),
    ("distribution", "uniform", "unknown distribution"),
    ("dtype", "int8", "unknown dtype"),
]


@pytest.mark.parametrize("field, value, words", BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_every_bad_value_is_refused_when_the_config_is_made(field, value, words):
    fields = {"allocation": "paper"} if field == "alpha" else {}
    with pytest.raises(UserError, match=None) as caught:
        RunConfig(model="tiny-llama", **{**fields, field: value})
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_good_values_pass_and_defaults_live_in_the_config():
    config = RunConfig(model="tiny-llama")
    assert (config.sparsity, config.probes, config.rel_tol, config.nsamples) == (0.5, 100, 0.2, 128)
    RunConfig(model="tiny-llama", sparsity=0.0, allocation="paper")  # dense: α's range unused
    RunConfig(model="tiny-llama", allocation="uniform", nm=(2, 4))


def _raised_in_checks(error: BaseException) -> bool:
    return any(frame.filename.endswith("checks.py")
               for frame in traceback.extract_tb(error.__traceback__))


ROUTES = [  # flag and value; the notebook's settings override or run field; message words
    (["--probes", "1"], {"probes": 1}, {}, "probes must be a whole number of at least 2"),
    (["--seed", "-3"], {}, {"seed": -3}, "seed must be a whole number of at least 0"),
    (["--nsamples", "0"], {"nsamples": 0}, {}, "nsamples must be a whole number of at least 1"),
    (["--alpha", "0.9"], {"alpha": 0.9}, {}, "too wide"),
]


@pytest.mark.parametrize("flags, overrides, fields, words", ROUTES,
                         ids=[" ".join(r[0]) for r in ROUTES])
def test_every_route_meets_the_same_check(monkeypatch, capsys, tmp_path, flags, overrides,
                                          fields, words):
    """The CLI, a notebook's settings and the torchrun entry: one message, from
    samrepro.checks, before a model is loaded."""
    import samrepro.study.experiments as experiments

    monkeypatch.setattr(experiments, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(UserError) as caught:
        s = settings.settings("smoke", models=["tiny-llama"], estimator="hutchinson",
                              **overrides)
        settings.config(s, "tiny-llama", sparsity=0.5, allocation="exact", **fields)
    message = str(caught.value)
    assert words in message and _raised_in_checks(caught.value)

    common = ["--model", "tiny-llama", "--seqlen", "16", *flags]
    out = tmp_path / "out.json"
    assert cli_main(["prune", *common, "--sparsity", "0.5", "--allocation", "exact",
                     "--json", str(out)]) == 2
    assert capsys.readouterr().err.strip().replace("--", "") == f"samrepro: error: {message}"
    if "--alpha" not in flags:  # the torchrun entry prunes nothing: it has no α
        assert torchrun_main([*common, "--json", str(out)]) == 2
        assert capsys.readouterr().err.strip().replace("--", "") == \
            f"samrepro: error: {message}"
    assert not out.exists()
