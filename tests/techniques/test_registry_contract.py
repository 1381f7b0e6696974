"""The registry-wide contract: every registered technique, on a tiny workload it applies to, builds,
leaves the baseline untouched, returns JSON-able details, declares its group and forms, and
round-trips through accelkit.save/load when it claims to."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques.padding import REFERENCE_TECHNIQUES
from accelkit.techniques.registry import (
    FORMS,
    GROUPS,
    OBJECTIVES,
    list_techniques,
    register_technique,
)
from accelkit.variants import build_variant
from accelkit.workloads.base import RunSettings, TensorWorkload
from accelkit.workloads.minilm import MiniLMWorkload, pydoc_sentences


class TinyImageWorkload(TensorWorkload):
    """A width-8 digits-style CNN on random 8×8 images: every image technique applies to it."""

    item_unit = "images"

    def __init__(self) -> None:
        from accelkit.workloads.digits import DigitsCNN

        g = torch.Generator().manual_seed(0)
        x = torch.randn(192, 1, 8, 8, generator=g)
        y = torch.randint(0, 10, (192,), generator=g)
        torch.manual_seed(0)
        model = DigitsCNN(width=8).eval()
        super().__init__("tiny-image", lambda: model, x[:64], y[:64], calib_inputs=x[64:], calib_labels=y[64:],
                         default_batch_size=32)
        self.train_inputs, self.train_labels = x[64:], y[64:]

    def train_dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.train_inputs, self.train_labels)

    @staticmethod
    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets)

    def offers(self) -> frozenset[str]:
        return super().offers() | {"block-stack", "student:small", "student:mobilenet-v2"}

    def student_architecture(self, name: str) -> nn.Module:
        from accelkit.workloads.digits import DigitsWorkload

        return DigitsWorkload.student_architecture(self, name)


class TinyTextWorkload(MiniLMWorkload):
    """A 6-layer width-32 random BERT behind MiniLM's tokenizer, on a few pydoc sentences."""

    name = "tiny-text"

    def build_model(self) -> nn.Module:
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=6,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=130)
        return BertModel(cfg, add_pooling_layer=False).eval()

    def eval_data(self, limit: int | None = None) -> list[str]:
        sents = list(pydoc_sentences()[:48])
        return sents if limit is None else sents[:limit]

    def calib_data(self, limit: int | None = None) -> list[str]:
        sents = list(pydoc_sentences()[48:1248])
        return sents if limit is None else sents[:limit]

    def unlabelled_text(self, name: str | None) -> tuple[str, ...]:
        return tuple(pydoc_sentences()[1248:1448]) if name else ()


@pytest.fixture(scope="module")
def tiny_workloads():
    return [TinyImageWorkload(), TinyTextWorkload()]


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


# compiling (inductor) takes minutes on 2 cores; tests/techniques/test_quant_* build these on digits
_COMPILES = {"compile", "int8-static"}
CHEAP = [pytest.param(t.name, marks=pytest.mark.slow) if t.name in _COMPILES else t.name
         for t in list_techniques() if not t.expensive]
# routed depth distils three students and fits a router: minutes even on the tiny encoder
_MINUTES = {"routed-depth"}
EXPENSIVE = [pytest.param(t.name, marks=pytest.mark.slow) if t.name in _MINUTES else t.name
             for t in list_techniques() if t.expensive]


def test_every_descriptor_states_its_group_forms_and_needs():
    from accelkit.workloads.base import OFFERS

    assert CHEAP and EXPENSIVE
    for t in list_techniques():
        assert t.group in GROUPS, t.name
        assert t.accepts <= set(FORMS) and (t.produces is None or t.produces in FORMS), t.name
        assert t.needs <= set(OFFERS), (t.name, t.needs - set(OFFERS))
        # an empty set: a reference row (fixed-length) that the search never tries
        assert t.objectives <= set(OBJECTIVES) and (t.objectives or t.name in REFERENCE_TECHNIQUES), t.name
        assert t.description and t.module.startswith("accelkit.techniques."), t.name


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ConfigError, match="registered twice"):
        register_technique("bf16", group="precision", description="again")(lambda m, ctx: (m, ctx.settings))
    with pytest.raises(ConfigError, match="group"):
        register_technique("test-no-group", group="speed", description="x")


def _plan_for(name: str, wl) -> str:
    """``name`` alone, or after the first technique that builds a model it accepts (a serving step
    such as parallel-streams applies to what a runtime step built)."""
    from accelkit.techniques.registry import get_technique, list_techniques

    t = get_technique(name)
    if "eager" in t.accepts:
        return name
    prefix = next(p.name for p in list_techniques(wl) if p.produces in t.accepts and "eager" in p.accepts)
    return f"{prefix}+{name}"


def _check_contract(name: str, workloads, tmp_path) -> None:
    """Build on the first tiny workload it applies to; a clear ConfigError (e.g. int4 needs Linear
    widths divisible by 32) moves on to the next one, anything else fails. A technique that claims
    to be saveable must load back (from the folder and the workload's architecture alone, no technique
    re-run) with the same outputs; one that does not is refused at save time with ShipError."""
    from accelkit.runtimes import ShipError
    from accelkit.saving import load, save
    from accelkit.techniques.registry import get_technique

    applicable = [w for w in workloads if t_applies(name, w)]
    if not applicable:
        pytest.skip(f"{name}: neither tiny workload offers what it needs on this machine")
    refusals = []
    for wl in applicable:
        base = wl.build_model()
        before = _digest(base)
        settings = RunSettings(batch_size=wl.default_batch_size)
        plan = _plan_for(name, wl)
        try:
            built = build_variant(plan, base, settings, wl, max_quality_drop=0.05)
        except ConfigError as exc:
            refusals.append(f"{wl.name}: {exc}")
            continue
        assert _digest(base) == before, f"{name} changed the baseline of {wl.name}"
        assert built.steps == tuple(plan.split("+")) and built.compute_dtype in ("fp32", "bf16", "int8")
        json.dumps(built.details)  # JSON-able as it is: it goes into results.json unconverted
        data = wl.eval_data(16)
        out = wl.predict(built.model, data, built.settings)
        ref = wl.predict(base, data, settings)
        assert out.shape == ref.shape and torch.isfinite(out).all(), name
        if get_technique(name).saveable:
            path = save(built, tmp_path / "saved", workload=wl.name)
            loaded = load(path, workload=wl)
            again = wl.predict(loaded.model, data, loaded.settings)
            torch.testing.assert_close(again, out, rtol=1e-4, atol=1e-4, msg=f"{name} does not round-trip")
        else:  # refused at save time, with the reason, never half-written
            with pytest.raises(ShipError):
                save(built, tmp_path / "refused", workload=wl)
            assert not (tmp_path / "refused").exists()
        return
    pytest.fail(f"{name} built on no tiny workload it applies to: {refusals}")


def t_applies(name: str, wl) -> bool:
    from accelkit.techniques.registry import get_technique

    return get_technique(name).applies_to(wl)


@pytest.mark.parametrize("name", CHEAP)
def test_every_cheap_technique_builds_and_leaves_the_baseline_untouched(name, tiny_workloads, tmp_path):
    _check_contract(name, tiny_workloads, tmp_path)


@pytest.mark.parametrize("name", EXPENSIVE)
def test_every_training_technique_builds_and_leaves_the_baseline_untouched(name, tiny_workloads, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    _check_contract(name, tiny_workloads, tmp_path)
