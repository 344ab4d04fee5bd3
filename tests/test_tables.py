"""How the tables run their arms over seeds (no model runs: the runner is replaced)."""

from samrepro.study import presets, tables


def test_an_arm_no_seed_changes_runs_once_and_the_others_once_a_seed(monkeypatch):
    s = {**presets.preset("smoke"), "seeds": 3, "data_dir": None, "device": "cpu"}
    seen = []

    def fake_run_all(s, configs, desc):
        seen.extend(configs)
        return [{"seed": c.seed, "sparsity": c.sparsity, "wbits": c.wbits} for c in configs]

    monkeypatch.setattr(tables, "run_all", fake_run_all)
    arms = {"dense": dict(model="smoke-opt", sparsity=0.0),
            "gptq": dict(model="smoke-opt", sparsity=0.0, wbits=4),  # quantizing calibrates
            "sparsegpt": dict(model="smoke-opt", sparsity=0.5, saliency="obs"),
            "magnitude": dict(model="smoke-opt", sparsity=0.5, saliency="magnitude"),
            # GPTQ reads calibration data: seeded even with magnitude saliency
            "magnitude+gptq": dict(model="smoke-opt", sparsity=0.5, saliency="magnitude",
                                   wbits=4),
            # ranked by a seeded sensitivity estimate: one run a seed
            "magnitude-mixed": dict(model="smoke-opt", sparsity=0.5, saliency="magnitude",
                                    allocation="exact")}
    found = tables.run_arms(s, arms, "test")
    assert [r["seed"] for r in found["dense"]] == [0]
    assert [r["seed"] for r in found["gptq"]] == [0, 1, 2]
    assert [r["seed"] for r in found["sparsegpt"]] == [0, 1, 2]
    assert [r["seed"] for r in found["magnitude"]] == [0]
    assert [r["seed"] for r in found["magnitude+gptq"]] == [0, 1, 2]
    assert [r["seed"] for r in found["magnitude-mixed"]] == [0, 1, 2]
    assert len(seen) == 1 + 3 + 3 + 1 + 3 + 3
