"""The Hutchinson estimate over processes (gloo on the CPU) against one process and the exact trace."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from samrepro.distributed import hutchinson_distributed, probe_seed
from samrepro.models import prunable_linears, tiny_model
from test_sensitivity import NAME, ids

SETTINGS = dict(rel_tol=0.0, min_probes=2, max_probes=5, chunk=4, batch_size=1, seed=3)


def model_and_windows():
    return tiny_model("llama", vocab_size=32, num_layers=2, hidden=16, seed=0).double(), ids(n=3)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, windows = model_and_windows()
        result = hutchinson_distributed(model, windows, keep_samples=True, **SETTINGS)
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_estimate_of_one(tmp_path):
    out = tmp_path / "two.json"
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    two = json.loads(out.read_text())
    model, windows = model_and_windows()
    one = hutchinson_distributed(model, windows, keep_samples=True, **SETTINGS)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["probes"] == one["probes"] == 5
    for name in one["matrices"]:
        torch.testing.assert_close(torch.tensor(two["samples"][name]),
                                   torch.tensor(one["samples"][name]), rtol=1e-10, atol=0)
        assert two["matrices"][name]["trace"] == pytest.approx(one["matrices"][name]["trace"],
                                                               rel=1e-10)


def test_each_sample_is_the_probe_form_on_its_batch():
    """Sample k of matrix i = z_iᵀ(H z)_i / n_i, z_j drawn from seed (3, k, j) for every
    matrix j, H the Hessian of the loss on batch k mod 3 over all prunable weights, H z taken
    by torch.func (forward-over-reverse, not the estimator's double backward)."""
    from torch.func import functional_call, grad, jvp
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, windows = model_and_windows()
    got = hutchinson_distributed(model, windows, keep_samples=True, **SETTINGS)["samples"]
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


def test_layer_checkpointing_changes_nothing_but_memory():
    model, windows = model_and_windows()
    plain = hutchinson_distributed(model, windows, **SETTINGS)
    again = hutchinson_distributed(model, windows, checkpointing=True, **SETTINGS)
    for name, entry in plain["matrices"].items():
        assert again["matrices"][name]["trace"] == pytest.approx(entry["trace"], rel=1e-9)
    assert "forward" not in vars(model.model.layers[0])  # the wrapper is removed afterwards


def test_entry_point_writes_the_estimate_and_refuses_bad_input(tmp_path, data_dir, capsys):
    from samrepro.distributed import main

    out = tmp_path / "sens.json"
    args = ["--model", "tiny-llama", "--nsamples", "2", "--seqlen", "16", "--chunk", "2"]
    assert main(args + ["--probes", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["probes"] == 4 and result["world_size"] == 1
    assert len(result["matrices"]) == 14  # 2 layers × 7 matrices
    assert main(args + ["--probes", "1", "--json", str(tmp_path / "bad.json")]) == 2
    assert "samrepro: error:" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()
