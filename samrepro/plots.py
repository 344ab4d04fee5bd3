"""The paper's figures, drawn from the tables in samrepro.tables."""

from __future__ import annotations

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
