"""openvino-generate: the stateful OpenVINO graph in a lean decoding loop writes exactly
``model.generate``'s greedy tokens (left-padded batches, EOS stopping, a second call on a fresh
cache) on tiny random Llama and GPT-2 models, also after a save and load, and seeded sampling
draws generate's tokens; what the loop does not follow goes to the torch model; bad settings get
the documented error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

pytestmark = pytest.mark.skipif(OPENVINO_AVAILABLE() is not None, reason=str(OPENVINO_AVAILABLE()))

N_NEW = 9


def _tiny(kind: str):
    model = mf.tiny_causal_lm(kind)
    with torch.no_grad():  # wider logit margins than random init's, so kernel rounding flips no argmax
        model.get_input_embeddings().weight.mul_(8)
    return model


def _left_padded_batch():
    return mf.left_padded_batch(100)  # tiny_causal_lm's vocabulary


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_openvino_loop_writes_generates_greedy_tokens(kind):
    from accelkit.techniques.openvino_generate import openvino_generator

    model = _tiny(kind)
    ids, mask = _left_padded_batch()
    runner = openvino_generator(model)
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        for _ in range(2):  # the second call starts from an empty cache again
            out = runner.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                                  pad_token_id=0, eos_token_id=None)
            assert torch.equal(out, ref)
        # another batch size and prompt length on the same graph, no mask
        one = runner.generate(input_ids=ids[:1, 2:], max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
        assert torch.equal(one, model.generate(input_ids=ids[:1, 2:], max_new_tokens=N_NEW, do_sample=False,
                                               pad_token_id=0, eos_token_id=None))
        # EOS stops a row and pads it as generate does: take a token row 0 writes midway as the EOS
        eos = int(ref[0, 7 + 3])
        ref_eos = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                                 pad_token_id=0, eos_token_id=eos)
        out_eos = runner.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                                  eos_token_id=eos)
        # a call that names no EOS and no pad id: the model's EOS stops rows, which are padded with it
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, None
        ref_config = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False)
        out_config = openvino_generator(model).generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW)
    assert torch.equal(out_eos, ref_eos)
    assert torch.equal(out_config, ref_config) and not torch.equal(ref_config, ref_eos)  # padded with EOS, not 0


@pytest.mark.parametrize("kv_cache", ["f32", "u8"])
def test_rows_that_wrote_eos_leave_the_batch(kv_cache):
    """A greedy row that wrote EOS costs no later step: each call reads only the rows with no EOS
    yet, and the tokens still equal generate's (which steps every row until the last one ends)."""
    from accelkit.techniques.openvino_generate import OpenVinoGenerateConfig, openvino_generator

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    runner = openvino_generator(model, OpenVinoGenerateConfig(kv_cache=kv_cache))
    call = dict(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        free = model.generate(**call, eos_token_id=None)
        eos = int(free[0, ids.shape[1] + 2])  # row 0 writes it third
        ref = model.generate(**call, eos_token_id=eos)
        request, rows_read = runner._request, []

        class Counting:  # the infer request, counting the rows each call reads
            def infer(self, feeds):
                rows_read.append(len(feeds["input_ids"]))
                return request.infer(feeds)

            def reset_state(self):
                request.reset_state()

        runner._request = Counting()
        out = runner.generate(**call, eos_token_id=eos)
    assert torch.equal(out, ref)
    new = ref[:, ids.shape[1]:]
    writing = [int((~(new[:, :k] == eos).any(1)).sum()) for k in range(1, new.shape[1])]
    assert rows_read == [len(ids), *writing]
    assert min(writing) < len(ids)


@pytest.mark.parametrize("options", [{}, {"temperature": 1.5, "top_k": 5}, {"top_p": 0.8, "top_k": 0},
                                     {"min_p": 0.2}])
def test_sampling_draws_generates_tokens_under_the_same_seed(options):
    from accelkit.techniques.openvino_generate import openvino_generator

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    runner = openvino_generator(model)
    call = dict(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=True, pad_token_id=0,
                eos_token_id=None, **options)
    with torch.inference_mode():
        torch.manual_seed(3)
        ref = model.generate(**call)
        torch.manual_seed(3)
        out = runner.generate(**call)
        greedy = model.generate(**{**call, "do_sample": False})
    assert torch.equal(out, ref)
    if options.get("temperature"):  # flat enough to leave the argmax somewhere: the test sees a sampler
        assert not torch.equal(ref, greedy)


def test_what_the_loop_does_not_follow_goes_to_the_models_generate():
    from accelkit.techniques.openvino_generate import openvino_generator

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    runner = openvino_generator(model)
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, num_beams=2,
                             pad_token_id=0)
        out = runner.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, num_beams=2,
                              pad_token_id=0)
    assert torch.equal(out, ref)
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        runner.generate(input_ids=ids, max_new_tokens=0)
    with pytest.raises(ConfigError, match="last logits only"):
        runner(input_ids=ids)


def test_the_models_generation_config_decides_as_it_does_for_generate(tmp_path):
    # a config that samples by default samples in the loop too; one with a repetition penalty (which
    # the loop does not apply) runs the torch model, and once saved, is refused in one line
    from accelkit.runtimes.decoding import UnsupportedDecoding
    from accelkit.runtimes.openvino_lm import OpenVinoLm
    from accelkit.techniques.openvino_generate import openvino_generator

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    call = dict(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
    model.generation_config.do_sample, model.generation_config.temperature = True, 1.5
    runner = openvino_generator(model)
    with torch.inference_mode():
        torch.manual_seed(5)
        ref = model.generate(**call)
        torch.manual_seed(5)
        assert torch.equal(runner.generate(**call), ref)
        loaded = OpenVinoLm.load(tmp_path, runner.save(tmp_path))
        torch.manual_seed(5)
        assert torch.equal(loaded.generate(**call), ref)
        model.generation_config.do_sample, model.generation_config.repetition_penalty = False, 1.5
        runner = openvino_generator(model)
        ref = model.generate(**call)
        assert torch.equal(runner.generate(**call), ref)
        penalised = tmp_path / "penalised"
        penalised.mkdir()
        loaded = OpenVinoLm.load(penalised, runner.save(penalised))
        with pytest.raises(UnsupportedDecoding, match="repetition_penalty.*original model"):
            loaded.generate(**call)


@pytest.mark.parametrize("field,value", [("precision", "fp8"), ("kv_cache", "f64"), ("weights", "int2"),
                                         ("threads", 0)])
def test_bad_settings_name_the_field(field, value):
    from accelkit.techniques.openvino_generate import OpenVinoGenerateConfig

    with pytest.raises(ConfigError, match=field):
        OpenVinoGenerateConfig(**{field: value})


def test_a_model_that_is_not_a_causal_lm_is_refused():
    from accelkit.techniques.openvino_generate import openvino_generator

    with pytest.raises(ConfigError, match="causal LM"):
        openvino_generator(torch.nn.Linear(4, 4))


def test_int8_weights_keep_most_greedy_tokens():
    from accelkit.techniques.openvino_generate import OpenVinoGenerateConfig, openvino_generator

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    runner = openvino_generator(model, OpenVinoGenerateConfig(weights="int8"))
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        out = runner.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                              eos_token_id=None)
    assert out.shape == ref.shape and torch.equal(out[:, :7], ids)
    # compressed weights: the first new token of each row still agrees on this wide-margin model
    assert torch.equal(out[:, 7], ref[:, 7])



def test_the_f16_cache_variant_keeps_its_cache_in_f16_and_the_tiny_models_tokens():
    from types import SimpleNamespace

    from accelkit.techniques.openvino_generate import OpenVinoGenerateConfig
    from accelkit.techniques.registry import get_technique

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    ctx = SimpleNamespace(settings=SimpleNamespace(with_=lambda **changes: changes))
    built = get_technique("openvino-generate-f16-cache").apply(model, ctx, OpenVinoGenerateConfig())
    assert built.details["kv_cache"] == "f16" and built.settings == {"autocast": None}
    assert str(built.model._compiled.get_property("KV_CACHE_PRECISION")) == "<Type: 'float16'>"
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        out = built.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                                   eos_token_id=None)
    assert torch.equal(out, ref)


def test_a_saved_graph_loads_and_writes_the_same_tokens(tmp_path):
    from accelkit.runtimes.openvino_lm import OpenVinoLm
    from accelkit.techniques.openvino_generate import openvino_generator

    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    runner = openvino_generator(model)
    fields = runner.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.xml", "model.bin"}
    assert runner.serialized_size_bytes == sum(p.stat().st_size for p in tmp_path.iterdir())
    loaded = OpenVinoLm.load(tmp_path, fields)
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        assert torch.equal(loaded.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                                           eos_token_id=None), ref)
    # without the torch model, beams have nothing to run on: one line saying so
    with pytest.raises(ConfigError, match="num_beams.*greedily or samples"):
        loaded.generate(input_ids=ids, max_new_tokens=3, num_beams=2)


def test_the_graph_returns_each_rows_last_logits_and_its_attention_reads_a_float_mask():
    # a boolean mask sends the CPU plugin's fused cache-and-attention kernel down a path twice as
    # slow; the last logits (not an in-graph TopK) leave the argmax to numpy
    import numpy as np
    import openvino as ov

    from accelkit.export.openvino_lm import export_stateful_lm

    model = _tiny("llama")
    graph = export_stateful_lm(model)
    masks = [op.input_value(3).get_element_type() for op in graph.get_ops()
             if op.get_type_name() == "ScaledDotProductAttention"]
    assert masks and all(t == ov.Type.f32 for t in masks)
    assert not [op for op in graph.get_ops() if op.get_type_name() == "TopK"]
    ids, mask = _left_padded_batch()
    request = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    got = request.infer({"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                         "position_ids": positions.numpy(), "beam_idx": np.arange(len(ids), dtype=np.int32)})["logits"]
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    assert got.shape == tuple(want.shape)
    assert np.allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
