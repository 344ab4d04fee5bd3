"""samrepro: a reproduction of "One-Shot Sensitivity-Aware Mixed Sparsity Pruning for Large
Language Models" (Shao, Liu, Qian; ICASSP 2024).

Layers, lowest first. A module imports only modules of lower layers, never one of its own
layer or above (tests/test_layering.py reads this list and checks every import, lazy ones too):

    0 foundations: __init__, errors, files, provenance, stats
    1 machine and sizes: hardware, memory, presets, cache
    2 inputs: models, data
    3 per matrix: hessian, solver, sensitivity
    4 per model: allocation, pipeline, evaluate, resume, plan
    5 a run: experiments, checks
    6 over runs: claims, settings
    7 results: report, plots, verify
    8 tables: tables, standin
    9 commands: cli, readme, lab
    10 entry points over the commands: distributed, __main__
"""

__version__ = "0.1.0"
