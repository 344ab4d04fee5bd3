"""samrepro: a reproduction of "One-Shot Sensitivity-Aware Mixed Sparsity Pruning for Large
Language Models" (Shao, Liu, Qian; ICASSP 2024).

Modules, lower to higher (a module imports only ones before it in this list):
errors, files, models, data, hessian, solver, pipeline, evaluate, allocation, sensitivity,
cache, experiments, presets, report, tables, plots, cli.
"""

__version__ = "0.1.0"
