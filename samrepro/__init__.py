"""samrepro: a reproduction of "One-Shot Sensitivity-Aware Mixed Sparsity Pruning for Large
Language Models" (Shao et al., ICASSP 2024).

The sub-packages, each importing only those listed before it (docs/architecture.md):

    io/        models, data, zero-shot tasks, evaluation, cache, resume, provenance, files
    machine/   devices and dtypes, the memory and time model, placement, the plan
    method/    the paper's method and its baselines: Hessian, solver and saliencies,
               sensitivity estimators, allocations, the layer-by-layer pass (docs/method.md)
    study/     presets, settings, runs (arms × seeds), tables, claims, statistics, reports,
               plots, verify, the README generator
    standin/   training and checking the small OPT stand-in (off the run path)
    commands/  the samrepro CLI, the torchrun entry, JupyterLab

`samrepro.solver` and `samrepro.allocation` are aliases of the method's modules (names that
outside checks use).

Module layers, lowest first. A module imports only modules of lower layers, never one of its
own layer or above (tests/test_layering.py reads this list and checks every import, lazy ones
too, and the sub-packages' direction):

    0 foundations: __init__, errors, files, heap, inputs, names, progress, provenance, stats
    1 machine, sizes, registries: hardware, memory, presets, cache, registry
    2 inputs and checkpoints: models, data, resume
    3 per matrix: hessian, solver, sensitivity
    4 per model: allocation, pipeline, evaluate, plan
    5 estimates: estimators
    6 checks of values: checks
    7 a run's configuration: config
    8 a run: experiments
    9 over runs: claims, settings, export, plots
    10 results: report, verify
    11 tables: tables, standin, local
    12 commands: cli, readme, lab
    13 entry points over the commands: distributed, __main__, standin.__main__
"""

__version__ = "0.1.0"
