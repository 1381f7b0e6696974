"""ONNX export + ONNX Runtime: outputs match PyTorch across batch/sequence sizes, int8 ops are
really in the quantized graphs, static int8 keeps digits accuracy, bad input gets a clear error."""

from __future__ import annotations

import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.export.onnx import (
    OnnxExportConfig,
    OnnxExportError,
    OrtConfig,
    OrtModule,
    export_onnx,
    ort_session_module,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from accelkit.workloads.base import RunSettings
from accelkit.workloads.minilm import embedding_quality


@pytest.fixture(scope="module")
def digits_onnx(digits_model):
    return export_onnx(digits_model, torch.rand(2, 1, 8, 8))


def test_digits_onnx_matches_pytorch_at_any_batch_size(digits_model, digits_onnx):
    session = OrtModule(digits_onnx, OrtConfig(intra_op_threads=1))
    for batch in (1, 7, 64):
        x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = digits_model(x)
        torch.testing.assert_close(session(x), ref, rtol=1e-2, atol=0.05)
        torch.testing.assert_close(session(x), ref, rtol=1e-4, atol=1e-4)  # fp32 graph: far tighter in fact


def test_onnx_quantizers_do_not_repeat_ort_preprocessing_advice(digits_onnx, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        quantize_onnx_dynamic(digits_onnx)
        quantize_onnx_static(digits_onnx, [torch.rand(4, 1, 8, 8)])
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    other = logging.getLogger()
    assert not other.filters  # the filter is removed again: other root warnings still show


def test_onnx_static_int8_on_digits_keeps_accuracy_and_has_int8_ops(digits_workload, digits_model, digits_onnx):
    data = digits_workload.eval_data()
    settings = RunSettings(batch_size=256)
    calib = [x for x, _ in digits_workload.batches(digits_workload.calib_data(1024), settings)]
    qmodel = OrtModule(quantize_onnx_static(digits_onnx, calib, method="minmax"))
    assert qmodel.quantized_op_count() >= 7
    ref = digits_workload.predict(digits_model, data, settings)
    out = digits_workload.predict(qmodel, data, settings)
    drop = digits_workload.quality_drop(digits_workload.quality(out, ref, data), digits_workload.quality(ref, ref, data))
    assert drop <= 0.005  # half a point of accuracy


def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg, add_pooling_layer=False).eval()


def test_bert_export_has_dynamic_batch_and_sequence_axes():
    model = _tiny_bert()
    g = torch.Generator().manual_seed(0)

    def inputs(batch, seq):
        ids = torch.randint(1, 100, (batch, seq), generator=g)
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, seq // 2 :] = 0  # one padded row
        return {"input_ids": ids, "attention_mask": mask}

    session = ort_session_module(model, inputs(2, 5), runtime=OrtConfig(intra_op_threads=1))
    for batch, seq in ((1, 3), (4, 17), (3, 40)):
        feed = inputs(batch, seq)
        with torch.no_grad():
            ref = model(**feed).last_hidden_state
        got = session(**feed)
        assert got.shape == (batch, seq, 32)
        torch.testing.assert_close(got, ref, rtol=1e-2, atol=0.05)
    q = OrtModule(quantize_onnx_dynamic(session.onnx_bytes, per_channel=True))
    assert q.quantized_op_count() > 0 and session.quantized_op_count() == 0


def test_bert_attention_exports_as_eager_code_and_the_model_keeps_its_own():
    # sdpa's export selects on a boolean mask and guards each softmax against NaN, which ONNX
    # Runtime and OpenVINO do not fuse (ORT dynamic int8 on minilm: 551 against 774 sentences/s)
    import onnx

    model = _tiny_bert()
    own = model.config._attn_implementation
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    feed = {"input_ids": torch.randint(1, 100, (2, 6), generator=torch.Generator().manual_seed(1)),
            "attention_mask": mask}

    def ops(attention):
        graph = onnx.load_from_string(export_onnx(model, feed, OnnxExportConfig(attention=attention)))
        return [n.op_type for n in graph.graph.node]

    assert own != "eager" and "IsNaN" in ops("model")
    eager = ops("eager")
    assert "IsNaN" not in eager and eager.count("Softmax") == 2
    assert model.config._attn_implementation == own  # the model is handed back as it came
    session = ort_session_module(model, feed, runtime=OrtConfig(intra_op_threads=1))  # the default: eager
    with torch.no_grad():
        ref = model(**feed).last_hidden_state
    torch.testing.assert_close(session(**feed)[0, :], ref[0, :], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(session(**feed)[1, :4], ref[1, :4], rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match="attention"):
        OnnxExportConfig(attention="flash")


@pytest.mark.slow  # ~30 s: exports the real MiniLM
def test_minilm_onnx_dynamic_axes_and_int8(minilm_workload, minilm_model):
    data = minilm_workload.eval_data(24)
    settings = RunSettings(batch_size=8, padding="dynamic", sort_by_length=True)  # three sequence lengths
    ref = minilm_workload.predict(minilm_model, data, settings)
    fp32 = ort_session_module(minilm_model, minilm_workload.example_inputs(data, settings))
    out = minilm_workload.predict(fp32, data, settings)
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=0.05)
    assert embedding_quality(out, ref)["cosine_min"] > 0.9999
    q = OrtModule(quantize_onnx_dynamic(fp32.onnx_bytes, per_channel=True))
    assert q.quantized_op_count() > 0 and fp32.quantized_op_count() == 0
    assert embedding_quality(minilm_workload.predict(q, data, settings), ref)["cosine_mean"] > 0.95


def test_export_failure_names_the_op_and_the_fallback():
    class Eig(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvalsh(x @ x.transpose(-1, -2))

    with pytest.raises(OnnxExportError, match=r"linalg_eigvalsh.*fallback"):
        export_onnx(Eig(), torch.randn(2, 4, 4))


def test_bad_inputs_get_clear_errors(digits_onnx):
    with pytest.raises(ConfigError, match="empty"):
        quantize_onnx_static(digits_onnx, [])
    with pytest.raises(ConfigError, match="expected one of"):
        quantize_onnx_static(digits_onnx, [torch.rand(2, 1, 8, 8)], method="kl")
    session = OrtModule(digits_onnx, OrtConfig(intra_op_threads=1))
    with pytest.raises(ConfigError, match="dims"):
        session(torch.rand(2, 8, 8))
    with pytest.raises(ConfigError, match="graph_optimization_level"):
        OrtConfig(graph_optimization_level="max")
    with pytest.raises(ConfigError, match="opset"):
        OnnxExportConfig(opset=7)
    with pytest.raises(ConfigError, match="expected a tensor"):
        export_onnx(torch.nn.Identity(), "not a tensor")


def test_threads_come_from_the_environment(digits_onnx, monkeypatch):
    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    assert OrtModule(digits_onnx).describe().threads == 1
    monkeypatch.delenv("ACCELKIT_THREADS")
    from accelkit.hardware import probe

    assert OrtModule(digits_onnx).describe().threads == probe()["recommend"]["threads"]


def test_ort_module_reports_flops_of_its_float_reference(digits_model, digits_onnx):
    from torch.utils.flop_counter import FlopCounterMode

    session = OrtModule(digits_onnx, OrtConfig(intra_op_threads=1), flop_reference=digits_model)
    with FlopCounterMode(display=False) as counter:
        session(torch.rand(4, 1, 8, 8))
    assert counter.get_total_flops() > 0

