"""One run's configuration (RunConfig): every setting that determines a run's numbers, each
default given once here and every value checked once, when the object is made. The CLI, a
notebook's settings (samrepro.study.settings.config), the torchrun entry, the stand-in's checks and
the benchmarks all build one; the presets (samrepro.study.presets) are the only other place values
come from. Bad values raise samrepro.errors.UserError naming the setting and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from samrepro import checks
from samrepro.method.allocation import allocation, check_alpha
from samrepro.io.data import DATASETS
from samrepro.errors import UserError
from samrepro.method.estimators import estimator, sensitivity_estimators
from samrepro.io.evaluate import SETTINGS, TASK_SOURCES, check_tasks
from samrepro.machine.hardware import DTYPES
from samrepro.method.solver import check_args

DISTRIBUTIONS = ("gaussian", "rademacher")  # Hutchinson probes: the paper's, the authors' code's


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (the device aside)."""

    model: str
    sparsity: float = 0.5
    saliency: str = "obs"
    allocation: str = "uniform"
    alpha: float | None = None  # None: the allocation's default (0.1; OWL's λ 0.08 for owl)
    estimator: str = "hutchinson"
    nm: tuple[int, int] | None = None
    wbits: int = 16
    calib: str = "c4"
    nsamples: int = 128
    seqlen: int = 2048
    eval: tuple[str, ...] = ("wikitext2", "ptb", "c4")
    eval_windows: int | None = None
    seed: int = 0
    num_layers: int | None = None
    dtype: str = "auto"  # auto: bf16 where the device has a bf16 unit (hardware.fast_dtype)
    probes: int = 100  # Hutchinson: at most this many probes
    rel_tol: float = 0.2  # Hutchinson: stop when 90% of matrices reach this relative error
    distribution: str = "gaussian"
    batch_size: int = 8
    trust_remote_code: bool = False
    # accuracy through lm-evaluation-harness (evaluate.zero_shot); none by default
    tasks: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("zero-shot",)  # and/or "leaderboard"
    limit: int | None = None  # first N documents of each task
    task_source: str | None = None  # local, hub; None: local when a data folder is in force
    allow_bin_weights: bool = False  # also read .bin (pickle) weights; not part of the identity
    extra: dict = field(default_factory=dict, compare=False)  # not part of the identity

    def __post_init__(self):
        self.validate()

    @property
    def resolved_alpha(self) -> float:
        return self.alpha if self.alpha is not None else allocation(self.allocation).default_alpha

    def validate(self) -> None:
        """Raise a UserError for the first setting that is not valid (samrepro.checks: the
        same checks, with the same messages, as the CLI's flags and a notebook's parameters)."""
        checks.model(self.model)
        checks.sparsity(self.sparsity)
        prune_n, prune_m = self.nm or (0, 0)
        check_args(self.sparsity, self.saliency, prune_n, prune_m, self.wbits)
        rule = allocation(self.allocation)
        if self.alpha is not None or (rule.uses_alpha and self.sparsity > 0):
            check_alpha(self.resolved_alpha, self.sparsity, self.allocation)
        if self.nm and rule.mixed:
            raise UserError(f"N:M ({prune_n}:{prune_m}) fixes N of every M weights: it cannot be "
                            f"combined with the mixed allocation {self.allocation!r}; use uniform")
        checks.choice(self.estimator, sensitivity_estimators(), "estimator")
        for value in (self.calib, *self.eval):
            checks.choice(value, DATASETS, "dataset")
        for name in ("nsamples", "seqlen", "batch_size", "eval_windows", "num_layers", "limit"):
            checks.at_least(getattr(self, name), 1, name)  # None: not limited
        checks.at_least(self.seed, 0, "seed")
        if "probes" in estimator(self.estimator).settings:
            checks.at_least(self.probes, 2, "probes")  # 2: for a standard error
            checks.non_negative(self.rel_tol, "rel_tol")
        checks.choice(self.distribution, DISTRIBUTIONS, "distribution")
        checks.choice(self.dtype, ("auto", *DTYPES), "dtype")
        if self.tasks:
            check_tasks(self.tasks, self.settings, self.limit)
        for name in self.settings:
            checks.choice(name, tuple(SETTINGS), "zero-shot setting")
        if self.task_source is not None:
            checks.choice(self.task_source, TASK_SOURCES, "task_source")

    def key(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data.pop("batch_size")  # changes speed, not results (up to float rounding)
        data.pop("allow_bin_weights")  # the weights hash records what was loaded
        if not self.tasks:  # keeps the keys of perplexity-only runs as they were
            for name in ("tasks", "settings", "limit", "task_source"):
                data.pop(name)
        return data
