"""The paper's figures, drawn from the tables in samrepro.study.tables."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")  # files, not windows; notebooks still show the returned figure
import matplotlib.pyplot as plt  # noqa: E402

from samrepro.io.files import write_text  # noqa: E402
from samrepro.study.names import labelled, model_label  # noqa: E402

# What each figure shows, under it in the Markdown results (embed) and in the notebooks
CAPTIONS = {
    "figure1": "Layer sensitivity against depth: the sum of a decoder layer's per-matrix average "
               "Hessian traces (Hutchinson, pooled over the calibration seeds), ± one standard "
               "error. The paper's Figure 1 claims a U shape: first and last layers most "
               "sensitive (C5).",
    "figure2": "Per-matrix average Hessian trace (Hutchinson) by matrix type across the decoder "
               "layers of {model} (symmetric log scale). The paper's Figure 2 claims v_proj and "
               "down_proj are the most sensitive types (C6).",
    "figure3": "PTB perplexity against the achieved overall sparsity (zeros counted after "
               "pruning, mean over seeds), per method, with 95% intervals over seeds and "
               "evaluation windows (log scale). The paper's Figure 3 claims the method's gain "
               "over SparseGPT grows with sparsity (C3).",
    "allocation": "Per-matrix sparsity that Algorithm 1 as printed gives {model} at p = {p:.0%}, "
                  "α = {alpha}, from the pooled sensitivity estimate: decoder layers (rows) × "
                  "matrix types (columns) (docs/method.md §4).",
}


def figure1(layers_by_model: dict, path=None):
    """Layer-level sensitivity against depth, ± one standard error (paper's Figure 1)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for model, df in layers_by_model.items():
        ax.errorbar(df["index"], df["trace"], yerr=df["stderr"], marker="o", ms=3, capsize=2,
                    label=model_label(model))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("sum of avg. Hessian traces")
    ax.set_title("Layer-level sensitivity (Hutchinson)")
    ax.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig


def figure2(matrices, model: str, path=None):
    """Per-matrix sensitivity by type across layers (paper's Figure 2)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for kind, df in matrices.groupby("type", sort=False):
        ax.plot(df["layer"], df["trace"], marker=".", label=kind)
    ax.set_yscale("symlog", linthresh=max(1e-12, float(matrices["trace"].abs().median()) / 10))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("avg. Hessian trace")
    ax.set_title(f"Weight-level sensitivity by matrix type: {model_label(model)}")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig


def figure3(df, path=None):
    """PTB perplexity against the achieved overall sparsity, per method, with each point's 95%
    interval (the paper's Figure 3 plots the target sparsity; a mixed allocation can miss it)."""
    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        for method, part in df[df.model == model].groupby("method", sort=False):
            x = part["achieved_sparsity"] if "achieved_sparsity" in part else part["sparsity"]
            errors = None
            if {"ptb_low", "ptb_high"} <= set(part.columns):
                errors = [part["ptb"] - part["ptb_low"], part["ptb_high"] - part["ptb"]]
            ax.errorbar(x, part["ptb"], yerr=errors, marker="o", ms=4, capsize=3, label=method)
        ax.set_yscale("log")
        ax.set_xlabel("achieved overall sparsity")
        ax.set_ylabel("PTB perplexity")
        ax.set_title(model_label(model))
        ax.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig


def embed(markdown, picture, caption: str) -> str:
    """Add `picture` (a file beside the Markdown result) with its caption to the end of the
    Markdown result `markdown` (results/<preset>/<name>.md, written by report.write); the
    added text."""
    from pathlib import Path

    markdown, picture = Path(markdown), Path(picture)
    text = markdown.read_text(encoding="utf-8")
    added = f"![{picture.stem}]({picture.name})\n\n*{picture.name}: {caption}*\n"
    if added not in text:  # before the provenance, the last section
        head, mark, tail = text.rpartition("## Provenance")
        text = (f"{head}{added}\n{mark}{tail}" if mark
                else text.rstrip("\n") + "\n\n" + added)
        write_text(markdown, text)
    return added


def _matrix_parts(name: str) -> tuple[int, str]:
    """'model.layers.3.mlp.down_proj' → (3, 'down_proj')."""
    parts = name.split(".")
    layer = next(int(p) for p in parts if p.isdigit())
    return layer, parts[-1]


def allocation_bars(targets: dict, p: float, alpha: float, achieved: dict | None = None,
                    title: str = "", path=None):
    """Per-matrix sparsity as bars grouped by matrix type (layers in order within a type), the
    band p ± α that a mixed allocation keeps to and the line at p (docs/method.md §4);
    `achieved` (name → counted sparsity) as dots on the bars."""
    kinds = list(dict.fromkeys(_matrix_parts(n)[1] for n in targets))
    order = sorted(targets, key=lambda n: (kinds.index(_matrix_parts(n)[1]), _matrix_parts(n)[0]))
    colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(order) + 2), 3.5))
    x = range(len(order))
    ax.axhspan(p - alpha, p + alpha, color="0.9", label=f"p ± α = {p:.0%} ± {alpha:.0%}")
    ax.axhline(p, color="0.4", lw=1, ls="--", label=f"p = {p:.0%}")
    ax.bar(x, [targets[n] for n in order], color=[colors[_matrix_parts(n)[1]] for n in order],
           width=0.8)
    if achieved:
        ax.plot(x, [achieved[n] for n in order], "k.", ms=3, label="achieved (zeros counted)")
    positions = {k: [i for i, n in enumerate(order) if _matrix_parts(n)[1] == k] for k in kinds}
    ax.set_xticks([sum(v) / len(v) for v in positions.values()], kinds, fontsize=8)
    ax.set_ylim(max(0.0, p - 2 * alpha), min(1.0, p + 2 * alpha))
    ax.set_ylabel("sparsity")
    ax.set_title(title or "Per-matrix sparsity by matrix type (layers left to right)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig


def allocation_heatmap(sparsities: dict, title: str = "", path=None, ax=None):
    """Per-matrix sparsity as a heat map: decoder layers (rows) × matrix types (columns)."""
    cells = {_matrix_parts(n): v for n, v in sparsities.items()}
    layers = sorted({layer for layer, _ in cells})
    kinds = list(dict.fromkeys(kind for _, kind in cells))
    grid = [[cells.get((layer, kind), float("nan")) for kind in kinds] for layer in layers]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(1 + 0.8 * len(kinds), 1 + 0.25 * len(layers)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    ax.set_ylabel("decoder layer")
    ax.set_title(title or "Per-matrix sparsity", fontsize=9)
    ax.figure.colorbar(image, ax=ax, label="sparsity")
    if fig is not None:
        fig.tight_layout()
        if path:
            fig.savefig(path, dpi=120)
    return ax.figure


# The forest plot's panels: a cell statistic → (its unit, how to show a value in it)
FOREST_UNITS = {"relative_change": "perplexity change, A vs B (%)",
                "mean_log_change": "perplexity change, A vs B (%)",
                "accuracy_difference": "accuracy difference, A − B (points)",
                "slope": "slope of log(ppl A / ppl B) per unit sparsity"}


def _forest_rows(claims: list[dict]) -> dict[str, list[dict]]:
    """The cells a forest plot shows, by panel: every decidable (not confounded) comparison
    cell and headline cell with an interval, in claim order; headlines first in a claim."""
    panels: dict[str, list[dict]] = {}
    for claim in claims:
        for cell in [*claim.get("headlines", []), *claim.get("cells", [])]:
            unit = FOREST_UNITS.get(cell.get("statistic"))
            if unit is None or cell.get("outcome") == "confounded" or "low" not in cell:
                continue
            arms = cell.get("arms") or (cell.get("pairs") or [["?"]])[0]
            scale = 100 if "%" in unit else 1
            value = cell.get("change", cell.get("difference", cell.get("slope")))
            key = str(arms[0]).split()[0]
            panels.setdefault(unit, []).append({
                "claim": claim["claim"], "model": model_label(key),
                "headline": bool(cell.get("headline")), "value": scale * value,
                "low": scale * cell["low"], "high": scale * cell["high"],
                "label": labelled(re.sub(r" \(headline, average over [^)]*\)", "",
                                         cell["text"].split(":")[0])),
                "outcome": cell.get("label", cell["outcome"])})
    return panels


def forest(claims: list[dict], path=None):
    """Every comparison cell's paired change with its 95% interval (docs/method.md §7),
    grouped by claim, coloured by model; headline cells (average over streams) drawn as
    diamonds. Each row is one comparison, A against B, never one arm's own interval. A claim
    holds where its side of 0 is the claimed one: below 0 for perplexity and slopes, above for
    accuracy. Returns the figure, or None when no cell has an interval."""
    panels = _forest_rows(claims)
    if not panels:
        return None
    models = list(dict.fromkeys(r["model"] for rows in panels.values() for r in rows))
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    heights = [max(1.0, 0.22 * len(rows) + 0.8) for rows in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (unit, rows) in zip(axes[:, 0], panels.items()):
        for y, r in enumerate(rows):
            ax.errorbar(r["value"], -y, xerr=[[r["value"] - r["low"]], [r["high"] - r["value"]]],
                        fmt="D" if r["headline"] else "o", ms=6 if r["headline"] else 3,
                        color=colours[r["model"]], capsize=2, lw=1.6 if r["headline"] else 0.8)
        ax.axvline(0, color="grey", lw=0.8)
        for y in range(1, len(rows)):  # a rule between claims
            if rows[y]["claim"] != rows[y - 1]["claim"]:
                ax.axhline(-y + 0.5, color="lightgrey", lw=0.6)
        ax.set_yticks([-y for y in range(len(rows))])
        ax.set_yticklabels([f"{r['claim']} {'◆ ' if r['headline'] else ''}{r['label']} "
                            f"({r['outcome']})" for r in rows], fontsize=6)
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    handles = [plt.Line2D([], [], color=colours[m], marker="o", ls="", label=m) for m in models]
    handles.append(plt.Line2D([], [], color="k", marker="D", ls="", label="headline (streams' mean)"))
    axes[0, 0].legend(handles=handles, fontsize=7, loc="best")
    axes[0, 0].set_title("Every comparison cell: the paired change A vs B with its 95% interval",
                         fontsize=9)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)  # written with the results: not shown again in the notebook
    return fig
