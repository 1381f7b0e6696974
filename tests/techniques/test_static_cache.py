"""static-cache-compile: the lean loop over a static cache writes exactly ``model.generate``'s
greedy tokens (left-padded batches, EOS stopping) and, under the same seed, its sampled draws, on
tiny random Llama and GPT-2 models; compiled, alone and after int8 weight-only, through bench on a
text-generation workload (slow)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.techniques.registry import composition_error, get_technique
from accelkit.techniques.static_cache import StaticCacheConfig, StaticCacheGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

N_NEW = 9


def _tiny(kind: str):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        return LlamaForCausalLM(cfg).eval()
    cfg = GPT2Config(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def _left_padded_batch():
    return mf.left_padded_batch(120)  # _tiny's vocabulary


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_lean_loop_writes_generates_greedy_tokens(kind):
    model = _tiny(kind)
    ids, mask = _left_padded_batch()
    lean = StaticCacheGenerator(model, StaticCacheConfig(compile=False, bucket=16))
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        for _ in range(2):  # the second call reuses (and clears) the first call's cache
            out = lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                                pad_token_id=0, eos_token_id=None)
            assert torch.equal(out, ref)
        # batch 1, no mask: the same tokens as the row's own generate
        one = lean.generate(input_ids=ids[:1], max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
        assert torch.equal(one, model.generate(input_ids=ids[:1], max_new_tokens=N_NEW, do_sample=False,
                                               pad_token_id=0, eos_token_id=None))
        # EOS stops a row and pads it as generate does: take a token row 0 writes midway as the EOS
        eos = int(ref[0, 7 + 3])
        ref_eos = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                                 pad_token_id=0, eos_token_id=eos)
        out_eos = lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                                eos_token_id=eos)
        # a call that names no EOS and no pad id: the model's EOS stops rows, which are padded with it
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, None
        ref_config = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False)
        out_config = lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW)
    assert torch.equal(out_eos, ref_eos)
    assert torch.equal(out_config, ref_config) and not torch.equal(ref_config, ref_eos)  # padded with EOS, not 0


@pytest.mark.parametrize("options", [{"top_k": 5}, {"temperature": 1.7, "top_p": 0.9}, {"min_p": 0.05}])
def test_sampling_draws_generates_tokens_under_the_same_seed(options):
    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    lean = StaticCacheGenerator(model, StaticCacheConfig(compile=False, bucket=16))
    call = dict(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=True, pad_token_id=0,
                eos_token_id=None, **options)
    with torch.inference_mode():
        torch.manual_seed(3)
        ref = model.generate(**call)
        torch.manual_seed(3)
        out = lean.generate(**call)
        greedy = lean.generate(**{**call, "do_sample": False})
    assert torch.equal(out, ref)
    assert not torch.equal(out, greedy)  # the loop sampled: these draws leave the argmax somewhere


def test_options_the_lean_loop_does_not_follow_go_to_generate():
    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    lean = StaticCacheGenerator(model, StaticCacheConfig(compile=False))
    with torch.inference_mode():
        plain = lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0)
        # beams, and a logits processor (banning the first token row 0 writes) that greedy picks ignore
        for options in (dict(num_beams=2), dict(bad_words_ids=[[int(plain[0, 7])]])):
            ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0, **options)
            out = lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0, **options)
            assert torch.equal(out, ref) and not torch.equal(out, plain), options


def test_config_and_composition_are_declared():
    with pytest.raises(ConfigError, match="bucket=0"):
        StaticCacheConfig(bucket=0)
    with pytest.raises(ConfigError, match="compile='yes'"):
        StaticCacheConfig(compile="yes")
    with pytest.raises(ConfigError, match="gemm=1"):
        StaticCacheConfig(gemm=1)
    with pytest.raises(ConfigError, match="gemv=1"):
        StaticCacheConfig(gemv=1)
    with pytest.raises(ConfigError, match="attention='flash'"):
        StaticCacheConfig(attention="flash")
    tech = get_technique("static-cache-compile")
    assert "generate" in tech.needs and not tech.saveable
    for before in ("int8-weight-only", "int8-dynamic", "bf16-cast"):
        assert composition_error([before, "static-cache-compile"]) is None
    assert composition_error(["static-cache-compile", "int8-weight-only"]) is not None
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        StaticCacheGenerator(_tiny("llama"), StaticCacheConfig(compile=False)).greedy(torch.ones(1, 2).long(), None, 0)


@pytest.mark.slow
def test_compiled_steps_match_generate_alone_and_after_int8_weight_only(tmp_path):
    """Through bench: agreement 1.0 with the fp32 greedy tokens for the compiled loop (tiny random
    Llama), and after weight-only int8 the same agreement as int8 weight-only under generate."""
    from accelkit.bench import bench
    from accelkit.workloads import workload_from_model

    wl = workload_from_model(mf.llama_folder(tmp_path), mf.prompts_file(tmp_path, 8), task="text-generation",
                             max_new_tokens=5)
    names = ["static-cache-compile", "int8-weight-only", "int8-weight-only+static-cache-compile"]
    res = bench(wl, names, batch_size=2, repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    by = {v.name: v for v in res.variants}
    assert all(by[n].error is None for n in names), {n: by[n].error for n in names}
    assert by["static-cache-compile"].quality["greedy_agreement"] == 1.0
    assert by["static-cache-compile"].details["compile_s"] > 0
    assert by["int8-weight-only+static-cache-compile"].quality["greedy_agreement"] >= \
        by["int8-weight-only"].quality["greedy_agreement"] - 0.2


def test_after_bf16_cast_the_loop_writes_the_cast_models_greedy_tokens():
    # bf16-cast wraps the model in CastInputs (no .config): static-cache-compile must reach the
    # bf16 model under it, not refuse the composition bf16-cast+static-cache-compile
    from accelkit.runtimes.torch_eager import CastInputs
    from accelkit.techniques.static_cache import causal_lm_of

    model = _tiny("llama").to(torch.bfloat16)
    wrapped = CastInputs(model, torch.bfloat16)
    assert causal_lm_of(wrapped) is model and causal_lm_of(model) is model
    ids, mask = _left_padded_batch()
    lean = StaticCacheGenerator(causal_lm_of(wrapped), StaticCacheConfig(compile=False, bucket=16))
    with torch.inference_mode():
        ref = wrapped.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                               pad_token_id=0, eos_token_id=None)
        out = lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                            eos_token_id=None)
    assert torch.equal(out, ref)


def test_the_multiply_and_sum_linear_matches_f_linear_and_leaves_other_calls_alone():
    from accelkit.techniques.static_cache import _GemvLinear

    torch.manual_seed(0)
    weight, bias = torch.randn(48, 32), torch.randn(48)
    for shape in ((1, 1, 32), (2, 5, 32)):
        x = torch.randn(shape)
        with _GemvLinear():
            got = torch.nn.functional.linear(x, weight, bias)
            no_bias = torch.nn.functional.linear(x, weight)
        torch.testing.assert_close(got, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(no_bias, x @ weight.T, rtol=1e-5, atol=1e-5)
    # more tokens than a decode step reads: the library matmul, bit for bit
    x = torch.randn(1, 40, 32)
    with _GemvLinear():
        assert torch.equal(torch.nn.functional.linear(x, weight, bias), torch.nn.functional.linear(x, weight, bias))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_compiled_step_writes_generates_greedy_tokens(kind):
    """The default compiled steps (eager attention, lean guards) on a left-padded batch of 3 (linear
    layers through inductor's GEMM template on frozen weights) and at batch 1 (multiply-and-sum
    linears); a second generator on the same model compiles its own steps."""
    model = _tiny(kind)
    ids, mask = _left_padded_batch()
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        for _ in range(2):
            lean = StaticCacheGenerator(model, StaticCacheConfig(bucket=16))
            assert torch.equal(lean.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW,
                                             pad_token_id=0, eos_token_id=None), ref)
            one = lean.generate(input_ids=ids[:1], max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
            assert torch.equal(one, model.generate(input_ids=ids[:1], max_new_tokens=N_NEW, do_sample=False,
                                                   pad_token_id=0, eos_token_id=None))
    # the model's own attention is back after the steps
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_the_compiled_sampling_step_draws_generates_tokens():
    """Sampling through the compiled steps that return logits (batch 3 and batch 1), seeded: the
    same draws as generate's, and the greedy step of the same generator still writes greedy tokens."""
    model = _tiny("llama")
    ids, mask = _left_padded_batch()
    lean = StaticCacheGenerator(model, StaticCacheConfig(bucket=16))
    with torch.inference_mode():
        for rows in (ids, ids[:1]):
            rows_mask = mask[: len(rows)]
            call = dict(input_ids=rows, attention_mask=rows_mask, max_new_tokens=N_NEW, do_sample=True, top_k=20,
                        pad_token_id=0, eos_token_id=None)
            torch.manual_seed(7)
            ref = model.generate(**call)
            torch.manual_seed(7)
            assert torch.equal(lean.generate(**call), ref)
            greedy = {**call, "do_sample": False}
            assert torch.equal(lean.generate(**greedy), model.generate(**greedy))


def test_grouped_query_attention_equals_the_eager_path_with_repeated_heads():
    """The many-row steps' attention reads each key/value head once for its query heads; it must
    give the eager path's output (keys and values repeated per head) under a padding mask."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from accelkit.techniques.static_cache import _grouped_query_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, h, n, 16, generator=g) for h, n in ((6, 2), (2, 10), (2, 10)))
    mask = torch.zeros(3, 1, 2, 12)
    mask[1, :, :, :4] = torch.finfo(torch.float32).min  # a left-padded row; the mask runs past the keys
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = 3, False
    ref, _ = eager_attention_forward(module, q, k, v, mask[..., :10], scaling=0.25)
    out, _ = _grouped_query_attention(module, q, k, v, mask, scaling=0.25)
    assert out.shape == ref.shape == (3, 2, 6, 16)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_a_flop_counting_pass_leaves_the_compiled_step_compiled():
    # bench counts FLOPs in one pass under a dispatch mode; dynamo cannot trace under one, and a
    # step it failed on once ran eagerly from then on. The step runs eagerly under the mode only.
    from torch._dynamo.utils import counters
    from torch.utils.flop_counter import FlopCounterMode

    model = _tiny("llama")
    ids, _ = _left_padded_batch()
    one = ids[:1]
    lean = StaticCacheGenerator(model, StaticCacheConfig(bucket=16, gemm=False))
    with torch.inference_mode():
        ref = model.generate(input_ids=one, max_new_tokens=N_NEW, do_sample=False, pad_token_id=0, eos_token_id=None)
        with FlopCounterMode(display=False) as flops:
            under_mode = lean.generate(input_ids=one, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
        assert torch.equal(under_mode, ref) and flops.get_total_flops() > 0
        graphs = counters["stats"]["unique_graphs"]
        out = lean.generate(input_ids=one, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
    assert torch.equal(out, ref)
    assert counters["stats"]["unique_graphs"] > graphs  # the step compiled now, not skipped for good
