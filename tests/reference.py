"""A plain re-implementation of the layer-by-layer pruning pass, for tests to compare with."""

import torch

from samrepro.io.models import architecture, decoder_layers
from samrepro.method.solver import prune_weight


def reference_prune(model, ids, sparsity, saliency="obs"):
    """Layer i's Hessians from a forward of the whole model, with layers < i already pruned;
    H built in fp64 from the inputs each linear sees, the solve in fp32 whatever the
    weights' dtype, the result cast back to it."""
    arch = architecture(model)
    for layer in decoder_layers(model):
        inputs = {sub: [] for sub in arch.linears}
        hooks = [layer.get_submodule(sub).register_forward_hook(
            lambda m, i, o, sub=sub: inputs[sub].append(i[0].reshape(-1, i[0].shape[-1])))
            for sub in arch.linears]
        with torch.no_grad():
            model(input_ids=ids)
        for h in hooks:
            h.remove()
        for sub in arch.linears:
            X = torch.cat(inputs[sub]).double()
            H = (2 * X.T @ X / X.shape[0]).float()
            weight = layer.get_submodule(sub).weight
            weight.data = prune_weight(weight.data.float(), H, sparsity, saliency).to(weight.dtype)
