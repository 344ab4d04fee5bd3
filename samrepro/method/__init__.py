"""The paper's method and its baselines (docs/method.md §1-§5): the Hessian, the solver and its saliencies, sensitivity estimators, allocations, the layer-by-layer pass."""
