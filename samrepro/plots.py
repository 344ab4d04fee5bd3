"""The paper's figures, drawn from the tables in samrepro.tables."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")  # files, not windows; notebooks still show the returned figure
import matplotlib.pyplot as plt  # noqa: E402


def figure1(layers_by_model: dict, path=None):
    """Layer-level sensitivity against depth, ± one standard error (paper's Figure 1)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for model, df in layers_by_model.items():
        ax.errorbar(df["index"], df["trace"], yerr=df["stderr"], marker="o", ms=3, capsize=2,
                    label=model)
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
    ax.set_title(f"Weight-level sensitivity by matrix type: {model}")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig


def figure3(df, path=None):
    """PTB perplexity against overall sparsity, per method (paper's Figure 3)."""
    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        for method, part in df[df.model == model].groupby("method", sort=False):
            ax.plot(part["sparsity"], part["ptb"], marker="o", label=method)
        ax.set_yscale("log")
        ax.set_xlabel("overall sparsity")
        ax.set_ylabel("PTB perplexity")
        ax.set_title(model)
        ax.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
    return fig


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
            panels.setdefault(unit, []).append({
                "claim": claim["claim"], "model": str(arms[0]).split()[0],
                "headline": bool(cell.get("headline")), "value": scale * value,
                "low": scale * cell["low"], "high": scale * cell["high"],
                "label": re.sub(r" \(headline, average over [^)]*\)", "", cell["text"].split(":")[0]),
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
