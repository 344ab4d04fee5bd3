import math

import pytest
import torch

from samrepro.errors import UserError
from samrepro.io.evaluate import perplexity
from samrepro.io.models import tiny_model


@pytest.mark.parametrize("rows", [None, 4])  # the LM head and loss in one piece, or 4 rows
@pytest.mark.parametrize("family", ["llama", "opt"])
def test_perplexity_is_exp_of_mean_token_nll(family, rows, monkeypatch):
    from samrepro.io import evaluate

    if rows:
        monkeypatch.setattr(evaluate, "LOSS_CHUNK_BYTES", 4 * 97 * rows)
    model = tiny_model(family, vocab_size=97, seed=1)
    ids = torch.randint(0, 97, (3 * 16 + 5,), generator=torch.Generator().manual_seed(2))
    got = perplexity(model, ids, seqlen=16, progress=False, batch_size=2)

    # Directly: each window alone, the log-probability of every next token, one at a time.
    nlls = []
    for w in range(3):
        window = ids[w * 16:(w + 1) * 16]
        with torch.no_grad():
            logp = torch.log_softmax(model(window[None]).logits[0].double(), dim=-1)
        nlls += [-float(logp[t, window[t + 1]]) for t in range(15)]
    assert got["windows"] == 3 and got["tokens"] == 45
    assert got["ppl"] == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)

    capped = perplexity(model, ids, seqlen=16, max_windows=1, progress=False)
    assert capped["window_index"] == [1]  # the middle of 3, not the first
    assert capped["ppl"] == pytest.approx(math.exp(sum(nlls[15:30]) / 15), rel=1e-5)
    two = perplexity(model, ids, seqlen=16, max_windows=2, progress=False)
    assert two["window_index"] == [0, 2]
    assert two["window_nll"] == pytest.approx([sum(nlls[:15]) / 15, sum(nlls[30:]) / 15],
                                              rel=1e-5)


@pytest.mark.parametrize("head", [True, False])  # the base and LM head, or the full logits
@pytest.mark.parametrize("rows", [45, 7, 1])  # one chunk; 7, which does not divide 45; 1
@pytest.mark.parametrize("family", ["llama", "opt"])
def test_token_nll_in_chunks_equals_the_nll_from_full_logits(family, rows, head, monkeypatch):
    from samrepro.io import evaluate
    from samrepro.io.evaluate import loss_rows, token_nll

    model = tiny_model(family, vocab_size=97, seed=3)
    monkeypatch.setattr(evaluate, "LOSS_CHUNK_BYTES", 4 * 97 * rows + 3)  # 3 bytes: rounds down
    assert loss_rows(97) == rows
    if not head:
        monkeypatch.setattr(model, "get_output_embeddings", lambda: None)
    calls = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: calls.append(len(out)))
    batch = torch.randint(0, 97, (3, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = token_nll(model, batch)
        hook.remove()
        logits = model(input_ids=batch).logits  # independently: all logits at once
    # 3 windows × 15 predicted tokens in chunks of `rows`, the last one shorter
    assert calls == ([rows] * (45 // rows) + [45 % rows] * (45 % rows > 0) if head else [3])
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    want = -logp.gather(-1, batch[:, 1:, None])[..., 0]
    assert got.shape == (3, 15) and got.dtype == torch.float32
    assert got.double().numpy() == pytest.approx(want.numpy(), rel=1e-5)
    windows = perplexity(model, batch.flatten(), seqlen=16, batch_size=2, progress=False)
    assert windows["window_nll"] == pytest.approx(want.mean(1).tolist(), rel=1e-5)


def test_loss_chunk_holds_about_25_mb_of_fp32_logits():
    from samrepro.io.evaluate import loss_rows

    assert loss_rows(49152) == 127 and 4 * 49152 * 127 <= 25e6 < 4 * 49152 * 128  # SmolLM2
    assert loss_rows(10**8) == 1


def test_capped_windows_are_spread_evenly_over_the_whole_stream():
    from samrepro.io.evaluate import spread_windows

    assert spread_windows(10, None) == list(range(10)) == spread_windows(10, 10)
    assert spread_windows(3, 5) == [0, 1, 2]
    for total, k in [(100, 4), (16, 16), (1000, 32), (37, 5)]:
        index = spread_windows(total, k)
        assert len(set(index)) == k and index == sorted(index)
        # one window in each of K equal strata of the stream, from the first to the last
        assert all(i * total / k <= w < (i + 1) * total / k for i, w in enumerate(index))
    assert spread_windows(100, 4) == [12, 37, 62, 87]


def test_stream_shorter_than_a_window_is_a_user_error():
    model = tiny_model("llama", vocab_size=11)
    with pytest.raises(UserError, match="fewer than seqlen"):
        perplexity(model, torch.arange(5), seqlen=16, progress=False)
