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
