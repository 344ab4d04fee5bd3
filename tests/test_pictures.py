"""The pictures: figure 3 on achieved sparsity with interval bars, the allocation heat map,
captions embedded in the Markdown results, models named by what they are."""

import numpy as np
import pandas as pd

from samrepro.study import plots
from samrepro.study.names import model_label


def test_models_are_named_by_what_they_are():
    assert model_label("embedded") == "SmolLM2-135M"
    assert model_label("embedded@2") == "SmolLM2-135M (first 2 layers)"
    assert model_label("opt-ptb-standin").startswith("OPT stand-in")
    assert model_label("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"


def test_figure3_draws_achieved_sparsity_with_the_intervals():
    df = pd.DataFrame({"model": ["embedded"] * 2, "method": ["ours"] * 2, "sparsity": [0.5, 0.6],
                       "achieved_sparsity": [0.517, 0.612], "ptb": [60.0, 80.0],
                       "ptb_low": [55.0, 70.0], "ptb_high": [66.0, 95.0]})
    fig = plots.figure3(df)
    ax = fig.axes[0]
    line = ax.lines[0]
    assert list(line.get_xdata()) == [0.517, 0.612]
    bars = ax.collections[0].get_segments()  # one vertical segment a point: [low, high]
    assert [tuple(s[:, 1]) for s in bars] == [(55.0, 66.0), (70.0, 95.0)]
    assert ax.get_title() == "SmolLM2-135M"


def test_the_heat_map_puts_each_matrix_in_its_layer_and_type():
    sparsities = {f"model.layers.{i}.self_attn.{t}": 0.4 + 0.1 * i + (0.01 if t == "v_proj" else 0)
                  for i in range(3) for t in ("q_proj", "v_proj")}
    fig = plots.allocation_heatmap(sparsities)
    grid = np.asarray(fig.axes[0].images[0].get_array())
    assert grid.shape == (3, 2)
    assert np.allclose(grid[:, 0], [0.4, 0.5, 0.6]) and np.allclose(grid[:, 1], [0.41, 0.51, 0.61])


def test_the_bars_show_every_matrix_and_the_band():
    targets = {"model.layers.0.mlp.up_proj": 0.6, "model.layers.1.mlp.up_proj": 0.55,
               "model.layers.0.self_attn.v_proj": 0.4}
    ax = plots.allocation_bars(targets, 0.5, 0.1).axes[0]
    assert sorted(round(b.get_height(), 3) for b in ax.patches if b.get_width() < 1) == [0.4, 0.55, 0.6]


def test_a_caption_is_embedded_before_the_provenance_once(tmp_path):
    md = tmp_path / "figure3.md"
    md.write_text("# figure3\n\n## Ours\n\nrows\n\n## Provenance\n\n```json\n{}\n```\n")
    plots.embed(md, tmp_path / "figure3.png", plots.CAPTIONS["figure3"])
    plots.embed(md, tmp_path / "figure3.png", plots.CAPTIONS["figure3"])
    text = md.read_text()
    assert text.count("![figure3](figure3.png)") == 1
    assert text.count("*figure3.png: PTB perplexity against the achieved") == 1
    assert text.index("(figure3.png)") < text.index("## Provenance")
