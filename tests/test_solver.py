"""The column solver against brute-force sequential OBS and hand-worked cases (docs/method.md §1, §2, §5)."""

import numpy as np
import pytest
import torch

from samrepro.errors import UserError
from samrepro.method.solver import SALIENCIES, prune_weight, prune_weights, saliency_scores


def correlated_problem(rows, cols, seed=0, tokens=256):
    """Weights, inputs (tokens × cols) and H = 2XᵀX/n, with correlated features of very
    different sizes, as the inputs of real LLM layers have."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.randn(cols, generator=g))
    mix = torch.eye(cols) + torch.randn(cols, cols, generator=g) / cols**0.5
    X = (torch.randn(tokens, cols, generator=g) @ mix) * scales
    W = torch.randn(rows, cols, generator=g)
    return W, X, 2 * X.T @ X / tokens


def brute_force(W, H, sparsity, saliency, blocksize, percdamp=0.01, wbits=16, prune_n=0,
                prune_m=0, parts=None):
    """Sequential OBS, one column at a time, with explicit inverses of the free columns' Hessian;
    in float64, and returns float64.

    Weights of column j chosen for removal are zeroed and the rest of their row (the columns
    not yet processed, F = j…n-1) is updated by δw_F = -(w_j / [H_F⁻¹]_jj) · [H_F⁻¹]_{j,F}.
    Masks are chosen for a whole block when its first column is reached (each of `parts`, a
    list of (rows, sparsity), with its own share), or with N:M for each group of M columns
    when its first column is reached (groups counted from the block's start).
    """
    W = W.double().numpy().copy()
    H = H.double().numpy().copy()
    H += percdamp * np.mean(np.diag(H)) * np.eye(len(H))
    rows, cols = W.shape
    parts = parts or [(rows, sparsity)]
    maxq = 2**wbits - 1
    if wbits < 16:  # per-row asymmetric min-max grid containing 0
        lo, hi = np.minimum(W.min(1), 0), np.maximum(W.max(1), 0)
        scale = (hi - lo) / maxq
        zero = np.round(-lo / scale)

    def scores_of(columns):  # the saliency of W[:, columns] as it is now
        seq_inv = np.array([np.linalg.inv(H[m:, m:])[0, 0] for m in columns])  # [H_F⁻¹]_mm
        w2, h = W[:, columns] ** 2, np.diag(H)[columns]
        if saliency == "obs":
            return w2 / seq_inv
        if saliency == "isc":
            return w2 * (h + 1 / seq_inv)
        return saliency_scores(saliency, *(torch.from_numpy(np.ascontiguousarray(a)) for a in (
            W[:, columns], np.sqrt(seq_inv), h))).numpy()  # any other criterion: its own score

    mask = np.zeros_like(W, dtype=bool)
    for j in range(cols):
        Hinv = np.linalg.inv(H[j:, j:])
        if not prune_n and j % blocksize == 0:
            block = list(range(j, min(j + blocksize, cols)))
            scores, r0 = scores_of(block), 0
            for r, p in parts:
                part = scores[r0:r0 + r]
                k = int(round(part.size * p))
                chosen = np.argsort(part.ravel(), kind="stable")[:k]
                part_mask = np.zeros(part.size, dtype=bool)
                part_mask[chosen] = True
                mask[r0:r0 + r, block] = part_mask.reshape(part.shape)
                r0 += r
        if prune_n and j % blocksize % prune_m == 0:
            group = list(range(j, j + prune_m))
            drop = np.argsort(scores_of(group), axis=1, kind="stable")[:, :prune_n]
            np.put_along_axis(mask[:, group[0]:group[-1] + 1], drop, True, axis=1)
        q = np.where(mask[:, j], 0.0, W[:, j])
        if wbits < 16:
            q = scale * (np.clip(np.round(q / scale) + zero, 0, maxq) - zero)
        err = (W[:, j] - q) / Hinv[0, 0]
        W[:, j:] -= np.outer(err, Hinv[0, :])
        W[:, j] = q
    return torch.from_numpy(W)


@pytest.mark.parametrize("saliency", ["obs", "isc"])
@pytest.mark.parametrize("blocksize", [16, 4])
def test_solver_equals_brute_force_sequential_obs(saliency, blocksize):
    W, _, H = correlated_problem(6, 16, seed=1)
    ours = prune_weight(W, H, 0.5, saliency, blocksize=blocksize)
    expected = brute_force(W, H, 0.5, saliency, blocksize).float()
    assert ((ours == 0) == (expected == 0)).all()
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


RECONSTRUCTING = [name for name, entry in SALIENCIES.items() if entry.reconstructs]


@pytest.mark.parametrize("saliency", RECONSTRUCTING)  # the others never reach the column loop
@pytest.mark.parametrize("cols, blocksize, wbits, nm", [
    (45, 128, 16, (0, 0)),   # one block, inner blocks of 16, 16, 13
    (90, 40, 16, (0, 0)),    # blocks of 40, 40, 10 (inner 16, 16, 8 and 10)
    (90, 40, 4, (0, 0)),     # with joint quantization
    (40, 128, 16, (2, 4)),   # N:M, inner blocks of 16, 16, 8
    (40, 24, 16, (4, 8)),    # N:M, blocks of 24, 16
])
def test_solver_equals_brute_force_in_float64(saliency, cols, blocksize, wbits, nm):
    """The solver's nested lazy updates (inner blocks inside the 128-column blocks) against
    sequential OBS column by column, both in float64: the same masks, the same weights up to
    rounding; each stacked matrix with its own sparsity (prune_weights)."""
    W, _, H = correlated_problem(9, cols, seed=13)
    W, H = W.double(), H.double()
    n, m = nm
    sizes, sparsities = [4, 5], [0.3, 0.6]
    ours = torch.cat(prune_weights(list(W.split(sizes)), H, sparsities, saliency, n, m, wbits,
                                   blocksize))
    expected = brute_force(W, H, None, saliency, blocksize, wbits=wbits, prune_n=n, prune_m=m,
                           parts=list(zip(sizes, sparsities)))
    assert ours.dtype == torch.float64
    assert torch.equal(ours == 0, expected == 0)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("wbits", [4, 3])
def test_joint_quantization_equals_brute_force(wbits):
    W, _, H = correlated_problem(5, 12, seed=2)
    ours = prune_weight(W, H, 0.5, "obs", wbits=wbits, blocksize=12)
    expected = brute_force(W, H, 0.5, "obs", 12, wbits=wbits).float()
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    for row in ours:  # every kept weight sits on a grid of 2**wbits levels
        assert len(torch.unique(row)) <= 2**wbits


def test_reconstruction_error_below_magnitude_pruning():
    W, X, H = correlated_problem(32, 64, seed=3, tokens=512)
    for sparsity in (0.3, 0.5, 0.7):
        error = {s: torch.linalg.norm((W - prune_weight(W, H, sparsity, s)) @ X.T)
                 for s in ("obs", "isc", "magnitude", "wanda")}
        assert error["obs"] < error["magnitude"]
        assert error["isc"] < error["magnitude"]
        assert error["obs"] < error["wanda"]  # the OBS update beats any mask without it


@pytest.mark.parametrize("saliency", ["obs", "isc", "isc-code"])
def test_every_block_has_exactly_its_share_of_zeros(saliency):
    W, _, H = correlated_problem(10, 300, seed=4, tokens=600)
    out = prune_weight(W, H, 0.37, saliency, blocksize=128)
    for b0 in range(0, 300, 128):
        block = out[:, b0:b0 + 128]
        assert int((block == 0).sum()) == round(block.numel() * 0.37)


@pytest.mark.parametrize("saliency", ["obs", "isc", "isc-code", "magnitude", "wanda"])
@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
def test_n_m_has_exactly_n_zeros_per_group(saliency, n, m):
    W, _, H = correlated_problem(8, 64, seed=5)
    out = prune_weight(W, H, 0.0, saliency, prune_n=n, prune_m=m)
    zeros = (out == 0).reshape(8, 64 // m, m).sum(dim=2)
    assert (zeros == n).all()


def test_isc_and_obs_choose_differently_on_a_hand_worked_case():
    # One row, two correlated inputs: H = [[1, .9], [.9, 1]], w = (2, 1), no damping.
    # obs: column 0 scores w0²/[H⁻¹]_00 = 4·(1 - .81) = 0.76, column 1 (alone) w1²·H_11 = 1
    #      → drops w0.  isc adds the OBD term w²H_mm: 4·1.19 = 4.76 vs 2 → drops w1.
    W = torch.tensor([[2.0, 1.0]])
    H = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    obs = prune_weight(W, H, 0.5, "obs", percdamp=0.0)
    isc = prune_weight(W, H, 0.5, "isc", percdamp=0.0)
    assert obs[0, 0] == 0 and obs[0, 1] != 0
    assert isc[0, 1] == 0 and isc[0, 0] == 2.0  # the last column's pruning updates nothing
    # obs keeps w1 and gives it w0's compensation: w1 + w0·[H⁻¹]_10/[H⁻¹]_00 = 1 + 2·0.9
    assert obs[0, 1].item() == pytest.approx(2.8, rel=1e-5)


def test_isc_is_invariant_to_the_scale_of_H_and_isc_code_is_not():
    W, _, H = correlated_problem(16, 64, seed=6)
    for scale in (1e-3, 1e3):
        torch.testing.assert_close(prune_weight(W, H * scale, 0.5, "isc"),
                                   prune_weight(W, H, 0.5, "isc"), rtol=1e-3, atol=1e-4)
    masks = [prune_weight(W, H * scale, 0.5, "isc-code") == 0 for scale in (1e-3, 1.0, 1e3)]
    assert (masks[0] != masks[1]).any() and (masks[1] != masks[2]).any()


def test_isc_code_differs_from_isc_and_obs():
    W, _, H = correlated_problem(16, 64, seed=7)
    masks = {s: prune_weight(W, H, 0.5, s) == 0 for s in ("obs", "isc", "isc-code")}
    assert (masks["obs"] != masks["isc"]).any()
    assert (masks["isc"] != masks["isc-code"]).any()


def test_magnitude_drops_the_smallest_weights_of_the_whole_matrix():
    W = torch.randn(12, 20, generator=torch.Generator().manual_seed(8))
    out = prune_weight(W, None, 0.4, "magnitude")
    order = np.argsort(np.abs(W.numpy()).ravel())
    expected = np.zeros(W.numel(), dtype=bool)
    expected[order[:96]] = True
    assert np.array_equal((out == 0).numpy().ravel(), expected)
    assert torch.equal(out[out != 0], W[out != 0])  # no update of the kept weights


def test_wanda_drops_per_row_by_weight_times_input_norm():
    W, X, H = correlated_problem(6, 10, seed=9)
    out = prune_weight(W, H, 0.5, "wanda")
    norms = X.norm(dim=0)  # ‖X_m‖₂ computed directly
    for r in range(6):
        drop = set(torch.argsort(W[r].abs() * norms)[:5].tolist())
        assert set(torch.nonzero(out[r] == 0).flatten().tolist()) == drop
    assert torch.equal(out[out != 0], W[out != 0])


def test_dead_inputs_are_zeroed():
    W, _, H = correlated_problem(4, 8, seed=10)
    H[3, :] = 0
    H[:, 3] = 0
    out = prune_weight(W, H, 0.25, "obs")
    assert (out[:, 3] == 0).all()
    assert torch.isfinite(out).all()


def test_dtype_shape_and_zero_sparsity():
    W, _, H = correlated_problem(4, 8, seed=11)
    out = prune_weight(W.half(), H, 0.5, "obs")
    assert out.dtype == torch.float16 and out.shape == W.shape
    torch.testing.assert_close(prune_weight(W, H, 0.0, "obs"), W)  # nothing to drop, no change


@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 1.0}, "[0, 1)"),
    ({"sparsity": -0.1}, "[0, 1)"),
    ({"saliency": "random"}, "unknown saliency"),
    ({"prune_n": 4, "prune_m": 4}, "N:M"),
    ({"prune_n": 3, "prune_m": 2}, "N:M"),
    ({"wbits": 1}, "wbits"),
])
def test_bad_arguments_raise_user_errors(kwargs, message):
    W, _, H = correlated_problem(4, 8, seed=12)
    args = {"sparsity": 0.5, **kwargs}
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
        prune_weight(W, H, **args)


def test_stacked_matrices_get_the_result_of_their_own_solves():
    """prune_weights (matrices sharing H, stacked outside the solver) against prune_weight on
    each matrix alone: the same masks, and the same weights up to matmul rounding."""
    torch.manual_seed(0)
    X = torch.randn(200, 64)
    H = 2 * X.T @ X / 200
    Ws = [torch.randn(24, 64), torch.randn(16, 64)]
    for saliency in ("obs", "isc", "wanda"):
        stacked = prune_weights(Ws, H, [0.3, 0.6], saliency, blocksize=16)
        for W, p, got in zip(Ws, [0.3, 0.6], stacked):
            alone = prune_weight(W, H, p, saliency, blocksize=16)
            assert torch.equal(got == 0, alone == 0), saliency
            assert torch.allclose(got, alone, rtol=1e-5, atol=1e-6), saliency
