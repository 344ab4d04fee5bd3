"""samrepro: a reproduction of "One-Shot Sensitivity-Aware Mixed Sparsity Pruning for Large
Language Models" (Shao et al., ICASSP 2024).

Layers, lowest first. A module imports only modules of lower layers, never one of its own
layer or above (tests/test_layering.py reads this list and checks every import, lazy ones too):

    0 foundations: __init__, errors, files, inputs, names, progress, provenance, stats
    1 machine, sizes, registries: hardware, memory, presets, cache, registry
    2 inputs: models, data
    3 per matrix: hessian, solver, sensitivity
    4 per model: allocation, pipeline, evaluate, resume, plan
    5 estimates: estimators
    6 checks of values: checks
    7 a run's configuration: config
    8 a run: experiments
    9 over runs: claims, settings, export, plots
    10 results: report, verify
    11 tables: tables, standin, local
    12 commands: cli, readme, lab
    13 entry points over the commands: distributed, __main__
"""

__version__ = "0.1.0"
