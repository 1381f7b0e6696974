"""packed-dropout: masks from 16-bit draws keep dropout's distribution (share kept, scale, mean),
leave eval mode and other calls alone, and run inside a compiled training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accelkit.train.techniques import build_train_variant
from accelkit.train.techniques.packed_dropout import PackedDropout, packed_dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_keep_dropouts_distribution(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1003)  # an element count not a multiple of four
    out = packed_dropout(x, p)
    kept = out != 0
    share = float(kept.float().mean())
    assert abs(share - (1 - p)) < 0.003  # ~1M draws: the binomial's spread is under 0.0005
    scale = 65536 / (65536 - round(p * 65536))
    assert torch.allclose(out[kept], torch.full_like(out[kept], scale))
    assert abs(float(out.mean()) - 1.0) < 0.01  # unbiased, as dropout is
    # rows of a 2-D input are not copies of one another (each element has its own 16 bits)
    assert not torch.equal(kept[0], kept[1])


def test_the_mode_replaces_training_dropout_only():
    torch.manual_seed(0)
    x = torch.randn(64, 64)
    with PackedDropout():
        assert torch.equal(F.dropout(x, 0.2, training=False), x)
        assert torch.equal(F.dropout(x, 0.0, training=True), x)
        assert torch.equal(torch.relu(x), x.clamp(min=0))
        dropped = F.dropout(x, p=0.2, training=True)
    assert 0.7 < float((dropped != 0).float().mean()) < 0.9
    assert torch.equal(packed_dropout(x, 1.0), torch.zeros_like(x))


def test_a_compiled_step_drops_with_packed_masks_and_trains(monkeypatch):
    """bench's compiled forward with the technique: the packed masks are what dynamo traces,
    dropout applies in train mode (outputs differ from eval mode's), and a few AdamW steps reduce
    the loss."""
    import accelkit.train.techniques.packed_dropout as packed
    from accelkit.train.bench import _compile_forward

    traced = []
    real = packed.packed_dropout

    def counted(x, p):
        traced.append(p)
        return real(x, p)

    monkeypatch.setattr(packed, "packed_dropout", counted)

    variant = build_train_variant(["compile", "packed-dropout"])
    assert variant.packed_dropout and variant.compile
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 1))
    forward = _compile_forward(model, packed_dropout=True)
    x, y = torch.randn(256, 16), torch.randn(256, 1)
    model.train()
    dropped = forward(x)
    with torch.no_grad():
        plain = model.eval()(x)
    model.train()
    assert not torch.allclose(dropped, plain)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.mse_loss(forward(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and sum(losses[-5:]) < sum(losses[:5])
    assert traced and set(traced) == {0.3}


def test_the_train_loop_runs_packed_masks_in_its_compiled_forward(digits_dataset, monkeypatch):
    """``accelkit train --compile --packed-dropout``: the loop's compiled forward traces the packed
    masks (dynamo's eager backend here, so the test needs no C++ compile) and the model learns;
    without compile the config is refused in one line."""
    from train_testkit import make_model

    import accelkit.train.techniques.packed_dropout as packed
    from accelkit.errors import ConfigError
    from accelkit.train import TrainConfig, train

    traced = []
    real = packed.packed_dropout
    monkeypatch.setattr(packed, "packed_dropout", lambda x, p: traced.append(p) or real(x, p))
    config = TrainConfig(micro_batch_size=32, lr=3e-3, epochs=2, progress=False, seed=1, compile=True,
                         compile_backend="eager", packed_dropout=True)
    result = train(make_model(dropout=0.25), digits_dataset, F.cross_entropy, config)
    assert traced and set(traced) == {0.25}
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    with pytest.raises(ConfigError, match="packed_dropout=True acts in the compiled forward"):
        TrainConfig(packed_dropout=True)
    assert "packed_dropout" not in TrainConfig().to_dict()  # earlier configs' dicts stay equal


@pytest.mark.parametrize("case", ["bool-mask", "float-mask", "causal", "gqa-scale"])
def test_attention_with_dropout_runs_sdpas_math_with_packed_masks(case):
    """Below one 65,536th the mask drops nothing: the replacement must then equal sdpa without
    dropout (masks, causal, grouped heads, scale); at p = 0.5 its mean over draws must approach it."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    options: dict = {}
    if case == "bool-mask":
        options["attn_mask"] = torch.rand(2, 1, 6, 6, generator=g) > 0.3
        options["attn_mask"][..., 0] = True  # every query keeps a key
    elif case == "float-mask":
        options["attn_mask"] = torch.randn(2, 1, 6, 6, generator=g)
    elif case == "causal":
        options["is_causal"] = True
    else:
        k, v = k[:, :2], v[:, :2]
        options.update(enable_gqa=True, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, **options)
    with PackedDropout():
        exact = F.scaled_dot_product_attention(q, k, v, dropout_p=1e-6, **options)
        torch.manual_seed(0)
        draws = torch.stack([F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, **options)
                             for _ in range(400)])
    torch.testing.assert_close(exact, ref, rtol=1e-5, atol=1e-5)
    assert float((draws[0] - ref).abs().mean()) > 0.1  # one draw is dropped ...
    assert float((draws.mean(0) - ref).abs().mean()) < 0.05  # ... and unbiased over many
