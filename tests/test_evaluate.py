import math

import pytest
import torch

from samrepro.errors import UserError
from samrepro.io.evaluate import perplexity
from samrepro.io.models import tiny_model


@pytest.mark.parametrize("loss_chunk", [128, 4])  # the LM head and loss in one or 4 pieces
@pytest.mark.parametrize("family", ["llama", "opt"])
def test_perplexity_is_exp_of_mean_token_nll(family, loss_chunk, monkeypatch):
    from samrepro.io import evaluate

    monkeypatch.setattr(evaluate, "LOSS_CHUNK", loss_chunk)
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
