"""The one Hutchinson loop over processes (gloo on the CPU) against one process, torch.func's
Hessian-vector products, and the cache that the notebooks read."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from samrepro.io.models import prunable_linears, tiny_model
from samrepro.method.sensitivity import hutchinson, probe_seed
from test_sensitivity import NAME, ids

SETTINGS = dict(rel_tol=0.0, min_probes=2, max_probes=5, chunk=4, batch_size=1, seed=3)


def model_and_windows():
    return tiny_model("llama", vocab_size=32, num_layers=2, hidden=16, seed=0).double(), ids(n=3)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _worker(rank, world, port, out):
    _group(rank, world, port)
    try:
        model, windows = model_and_windows()
        result = hutchinson(model, windows, keep_samples=True, progress=False, **SETTINGS)
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_samples_of_one(tmp_path):
    out = tmp_path / "two.json"
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    two = json.loads(out.read_text())
    model, windows = model_and_windows()
    one = hutchinson(model, windows, keep_samples=True, progress=False, **SETTINGS)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["probes"] == one["probes"] == 5
    for name in one["matrices"]:
        assert two["samples"][name] == one["samples"][name]  # bit for bit: same z, same batch
        assert two["matrices"][name] == one["matrices"][name]


def test_each_sample_is_the_probe_form_on_its_batch():
    """Sample k of matrix i = z_iᵀ(H z)_i / n_i, z_j drawn from seed (3, k, j) for every
    matrix j, H the Hessian of the loss on batch k mod 3 over all prunable weights, H z taken
    by torch.func (forward-over-reverse, not the estimator's double backward)."""
    from torch.func import functional_call, grad, jvp
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, windows = model_and_windows()
    got = hutchinson(model, windows, keep_samples=True, progress=False, **SETTINGS)["samples"]
    names = list(prunable_linears(model))
    weights = {f"{n}.weight": model.get_submodule(n).weight.detach() for n in names}
    for k in (0, 4):
        z = {f"{n}.weight": torch.randn(
            w.shape, generator=torch.Generator().manual_seed(probe_seed(3, k, j))).double()
            for j, (n, w) in enumerate(zip(names, weights.values()))}
        batch = windows[k % 3][None]

        def loss(ws):
            return functional_call(model, ws, args=(),
                                   kwargs={"input_ids": batch, "labels": batch}).loss

        with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
            _, hz = jvp(grad(loss), (weights,), (z,))
        for n in (NAME, names[-1]):
            key = f"{n}.weight"
            expected = float((z[key] * hz[key]).sum()) / z[key].numel()
            assert got[n][k] == pytest.approx(expected, rel=1e-5)  # fp32 sums


def test_layer_checkpointing_gives_the_plain_estimate():
    model, windows = model_and_windows()
    plain = hutchinson(model, windows, progress=False, **SETTINGS)
    again = hutchinson(model, windows, checkpointing=True, progress=False, **SETTINGS)
    for name, entry in plain["matrices"].items():
        assert again["matrices"][name]["trace"] == pytest.approx(entry["trace"], rel=1e-6)
    assert "forward" not in vars(model.model.layers[0])  # the wrapper is removed afterwards


def test_stopping_is_checked_at_the_same_probes_for_any_world_size():
    from samrepro.method.sensitivity import _blocks

    assert list(_blocks(5, 20, 8)) == [(0, 5), (5, 13), (13, 20)]
    assert list(_blocks(1, 3, 8)) == [(0, 2), (2, 3)]  # two probes before a standard error


# fp32: this test is about processes, not precision (bf16 sums differ with the thread count)
ENTRY = ["--model", "tiny-llama", "--nsamples", "3", "--seqlen", "16", "--probes", "4",
         "--rel-tol", "0", "--seed", "1", "--dtype", "float32", "--quiet"]


def _entry_worker(rank, world, port, argv):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from samrepro.commands.distributed import main

    assert main(argv) == 0


def _notebook_estimate(monkeypatch):
    """What the notebooks' sensitivity step gets (experiments.sensitivity_for with the config
    that settings.config builds), with the estimator itself made to fail: only the cache can
    answer."""
    from samrepro.method import estimators
    from samrepro.study import experiments, settings
    from samrepro.io.data import calibration_windows

    s = settings.settings("smoke", models=["tiny-llama"], nsamples=3, seqlen=16, probes=4,
                        estimator="hutchinson")
    s["rel_tol"] = 0.0
    cfg = settings.config(s, "tiny-llama", allocation="paper", seed=1, dtype="float32")
    model, tokenizer = experiments.load(cfg, torch.device("cpu"))
    windows, corpus = calibration_windows(cfg.calib, tokenizer, cfg.nsamples, cfg.seqlen,
                                          cfg.seed)

    def refuse(*a, **k):
        raise AssertionError("the notebook path recomputed an estimate the cache holds")

    monkeypatch.setattr(estimators, "hutchinson", refuse)
    return experiments.sensitivity_for(cfg, model, windows, corpus, "hutchinson", "cpu",
                                       progress=False), (model, windows)


def test_torchrun_entry_feeds_the_notebooks_cache(tmp_path, data_dir, monkeypatch, capsys):
    """Two gloo processes through the torchrun entry write the estimate that the notebooks'
    sensitivity step then reads, equal to one process's estimate computed here."""
    from samrepro.io.models import embedded_checkpoint

    (tmp_path / "cache").mkdir()  # a cache of its own, holding only the embedded tokenizer
    (tmp_path / "cache" / "smollm2-135m").symlink_to(embedded_checkpoint())
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sens.json"
    mp.spawn(_entry_worker, args=(2, free_port(), ENTRY + ["--json", str(out)]), nprocs=2,
             join=True)
    written = json.loads(out.read_text())
    assert written["world_size"] == 2 and written["probes"] == 4
    assert len(written["matrices"]) == 14  # 2 layers × 7 matrices
    got, (model, windows) = _notebook_estimate(monkeypatch)
    assert got["world_size"] == 2 and got["matrices"] == written["matrices"]
    one = hutchinson(model, windows, rel_tol=0.0, max_probes=4, seed=1, progress=False)
    for name, entry in one["matrices"].items():
        # fp32 sums, one thread per process there and two here: equal to float rounding
        assert got["matrices"][name]["trace"] == pytest.approx(entry["trace"], rel=1e-4)


def test_entry_point_refuses_bad_input(tmp_path, data_dir, capsys):
    from samrepro.commands.distributed import main, process_devices
    from samrepro.errors import UserError

    bad = tmp_path / "bad.json"
    assert main(["--model", "tiny-llama", "--nsamples", "2", "--seqlen", "16", "--probes", "1",
                 "--json", str(bad)]) == 2
    assert main(["--model", "tiny-llama", "--estimator", "fisher"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("samrepro: error:") for line in lines)
    assert not bad.exists()
    assert process_devices(8, 3, 4) == ["cuda:6", "cuda:7"]
    assert process_devices(0, 0, 2) == ["cpu"]
    with pytest.raises(UserError, match="GPUs"):
        process_devices(4, 0, 4, per_process=2)


def test_the_plan_sets_the_gpus_per_process_and_refuses_what_cannot_fit(monkeypatch, capsys):
    """On a node of 8 × 80 GB GPUs one LLaMA-2-13B probe, taken layer by layer, needs one of
    them (~37 GiB: tests/test_plan.py checks the memory model): 8 processes fit, 9 do not; the
    entry point says so in one line before loading anything. A probe that no GPU of the node
    holds, even with its layers streamed (70B on 16 GB GPUs), is refused."""
    from samrepro.study import experiments
    from samrepro.machine import plan
    from samrepro.commands.distributed import main, planned_gpus
    from samrepro.errors import UserError
    from samrepro.machine.memory import shape_of

    eight = plan.parse_gpus("8x80GB")
    shape = shape_of("meta-llama/Llama-2-13b-hf")
    assert planned_gpus("13b", shape, 2048, torch.bfloat16, eight, 8) == (1, False)
    assert planned_gpus("13b", shape, 2048, torch.bfloat16, eight, 1, per_process=4) == (4, False)
    with pytest.raises(UserError, match="--nproc-per-node 8$"):
        planned_gpus("13b", shape, 2048, torch.bfloat16, eight, 9)
    with pytest.raises(UserError, match="--nproc-per-node 2$"):
        planned_gpus("13b", shape, 2048, torch.bfloat16, eight, 3, per_process=4)
    with pytest.raises(UserError, match="does not fit the 8 GPUs"):
        planned_gpus("70b", shape_of("meta-llama/Llama-2-70b-hf"), 2048, torch.bfloat16,
                     plan.parse_gpus("8x16GB"), 1)

    monkeypatch.setattr(plan, "visible_gpus", lambda: eight)
    monkeypatch.setattr(experiments, "load", lambda *a: pytest.fail("loaded before the check"))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "9")
    assert main(["--model", "meta-llama/Llama-2-13b-hf", "--dtype", "bfloat16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samrepro: error:")
    assert err[0].endswith("use torchrun --nproc-per-node 8")


def test_sizes_and_settings_default_to_the_preset_the_notebooks_use():
    from samrepro.commands.distributed import build_parser, preset_defaults
    from samrepro.study.settings import settings

    for name in ("paper", "smoke"):
        args = build_parser().parse_args(["--model", "smoke-llama", "--preset", name])
        preset_defaults(args)
        s = settings(name)
        assert (args.nsamples, args.seqlen, args.probes, args.rel_tol) == \
            (s["nsamples"], s["seqlen"], s["probes"], s["rel_tol"])
    args = build_parser().parse_args(["--model", "m", "--probes", "7", "--seqlen", "64"])
    preset_defaults(args)
    assert (args.probes, args.seqlen, args.nsamples) == (7, 64, 128)
