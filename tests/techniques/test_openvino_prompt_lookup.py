"""openvino-prompt-lookup: greedy batch-1 decoding that verifies prompt-lookup drafts writes exactly
``model.generate``'s tokens in fewer calls than tokens, with drafts both kept and rejected; EOS
stops it as it stops generate; batches and sampling run the plain loop; a saved folder keeps the
lookup; GPT-2 (absolute positions) and Qwen2 keep and reject drafts and still write generate's
tokens; bad settings get the documented error."""

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

N_NEW = 24


class _CountingRequest:
    """The infer request, recording how many tokens each call reads."""

    def __init__(self, request):
        self.request, self.reads = request, []

    def infer(self, feeds):
        self.reads.append(feeds["input_ids"].shape[1])
        return self.request.infer(feeds)

    def reset_state(self):
        self.request.reset_state()


def _model():
    model = mf.tiny_causal_lm("llama")
    with torch.no_grad():  # wider logit margins than random init's, so kernel rounding flips no argmax
        model.get_input_embeddings().weight.mul_(8)
    return model


def _greedy(model, ids, **options):
    with torch.inference_mode():
        return model.generate(input_ids=ids, max_new_tokens=N_NEW, do_sample=False, pad_token_id=0, **options)


def _prompt():
    # a prompt that repeats itself, so the lookup finds runs to copy
    return torch.tensor([[5, 17, 42, 9, 33, 5, 17, 42, 9, 71, 5, 17]])


def test_lookup_writes_generates_greedy_tokens_in_fewer_calls():
    from accelkit.techniques.openvino_prompt_lookup import openvino_prompt_lookup

    model = _model()
    runner = openvino_prompt_lookup(model)
    counting = runner._request = _CountingRequest(runner._request)
    ids = _prompt()
    ref = _greedy(model, ids, eos_token_id=None)
    for _ in range(2):  # the second call starts from an empty cache again
        counting.reads.clear()
        with torch.inference_mode():
            out = runner.generate(input_ids=ids, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
        assert torch.equal(out, ref)
    decode_calls = counting.reads[1:]
    assert len(decode_calls) < N_NEW - 1  # drafts were kept: fewer calls than tokens after the first
    # more tokens read than kept: some drafts were rejected, and their masked slots did not change a token
    assert sum(decode_calls) > N_NEW - 1


@pytest.mark.parametrize("kind,scale,prompt", [
    # GPT-2 reads absolute positions, which must count the kept tokens only, past masked slots. A
    # larger scale makes this tiny GPT-2 repeat one token, which leaves no draft to reject.
    ("gpt2", 1, [87, 25, 41, 68, 47, 72, 94, 21, 71, 15, 36, 24]),
    ("qwen2", 4, [65, 90, 23, 3, 53, 81, 23, 28, 81, 58, 11, 59]),
])
def test_other_architectures_keep_and_reject_drafts_and_write_generates_tokens(kind, scale, prompt):
    from accelkit.techniques.openvino_prompt_lookup import openvino_prompt_lookup

    model = mf.tiny_causal_lm(kind)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)
    runner = openvino_prompt_lookup(model)
    counting = runner._request = _CountingRequest(runner._request)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = runner.generate(input_ids=ids, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
    assert torch.equal(out, _greedy(model, ids, eos_token_id=None))
    decode_calls = counting.reads[1:]
    assert len(decode_calls) < N_NEW - 1 and sum(decode_calls) > N_NEW - 1  # drafts kept and drafts rejected


def test_eos_in_a_kept_draft_stops_as_generate_stops():
    from accelkit.techniques.openvino_prompt_lookup import openvino_prompt_lookup

    model = _model()
    ids = _prompt()
    ref = _greedy(model, ids, eos_token_id=None)
    eos = int(ref[0, ids.shape[1] + 9])  # a token written midway, taken as the EOS
    ref_eos = _greedy(model, ids, eos_token_id=eos)
    assert ref_eos.shape[1] < ref.shape[1]
    with torch.inference_mode():
        out = openvino_prompt_lookup(model).generate(input_ids=ids, max_new_tokens=N_NEW, pad_token_id=0,
                                                     eos_token_id=eos)
    assert torch.equal(out, ref_eos)


def test_batches_verify_fewer_drafts_and_sampling_runs_the_plain_loop_with_generates_tokens():
    from accelkit.techniques.openvino_prompt_lookup import (
        PromptLookupConfig,
        openvino_prompt_lookup,
    )

    model = _model()
    # rows that repeat themselves (so drafts are kept in every row), the last one left-padded by 3
    ids = torch.cat([_prompt(), (_prompt() + 11) % 100, (_prompt() + 23) % 100, _prompt() * 0])
    ids[3, 3:] = ((_prompt() + 37) % 100)[0, :9]
    mask = (torch.arange(12) >= torch.tensor([0, 0, 0, 3])[:, None]).long()
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
        for drafts in (2, 0):
            runner = openvino_prompt_lookup(model, PromptLookupConfig(batch_draft_tokens=drafts))
            counting = runner._request = _CountingRequest(runner._request)
            out = runner.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                                  eos_token_id=None)
            assert torch.equal(out, ref)
            if drafts:  # each call reads at most 1 + 2 columns, and fewer calls than tokens are needed
                assert max(counting.reads[1:]) <= 3 and len(counting.reads[1:]) < N_NEW - 1
            else:
                assert counting.reads[1:] == [1] * (N_NEW - 1)
        call = dict(input_ids=_prompt(), max_new_tokens=N_NEW, do_sample=True, top_k=5, pad_token_id=0,
                    eos_token_id=None)
        torch.manual_seed(2)
        sampled = model.generate(**call)
        torch.manual_seed(2)
        assert torch.equal(runner.generate(**call), sampled)


@pytest.mark.parametrize("batch", [1, 3])
def test_rows_stopped_by_eos_are_padded_as_generate_pads_them(batch):
    from accelkit.techniques.openvino_prompt_lookup import (
        PromptLookupConfig,
        openvino_prompt_lookup,
    )

    model = _model()
    ids = _prompt().repeat(batch, 1)
    ids[1:, 0] = 3  # other rows: another first id, so they write other tokens
    mask = torch.ones_like(ids)
    ref = _greedy(model, ids, eos_token_id=None, attention_mask=mask)
    eos = int(ref[0, ids.shape[1] + 9])  # a token written midway by the first row, taken as the EOS
    ref_eos = _greedy(model, ids, eos_token_id=eos, attention_mask=mask)
    with torch.inference_mode():
        runner = openvino_prompt_lookup(model, PromptLookupConfig(batch_draft_tokens=2))
        out = runner.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, pad_token_id=0,
                              eos_token_id=eos)
    assert torch.equal(out, ref_eos)


def test_a_saved_folder_keeps_the_lookup(tmp_path):
    from accelkit.runtimes.openvino_lm import OpenVinoLm
    from accelkit.techniques.openvino_prompt_lookup import (
        PromptLookupConfig,
        openvino_prompt_lookup,
    )

    model = _model()
    fields = openvino_prompt_lookup(model, PromptLookupConfig(draft_tokens=3, ngram=2)).save(tmp_path)
    loaded = OpenVinoLm.load(tmp_path, fields)
    assert (loaded.config.lookup_tokens, loaded.config.lookup_ngram) == (3, 2)
    counting = loaded._request = _CountingRequest(loaded._request)
    with torch.inference_mode():
        out = loaded.generate(input_ids=_prompt(), max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
    assert torch.equal(out, _greedy(model, _prompt(), eos_token_id=None))
    assert max(counting.reads[1:]) <= 4 and len(counting.reads) < N_NEW


def _store_batches():
    g = torch.Generator().manual_seed(0)
    ids, mask = mf.left_padded_batch(100)  # padding must not enter the store
    return [{"input_ids": torch.randint(2, 100, (4, 8), generator=g)} for _ in range(2)] + \
        [{"input_ids": ids, "attention_mask": mask}]


def _reads(runner, ids):
    counting = runner._request = _CountingRequest(getattr(runner._request, "request", runner._request))
    with torch.inference_mode():
        out = runner.generate(input_ids=ids, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
    return out, counting.reads[1:]


def test_a_store_of_the_models_own_continuations_drafts_where_the_row_has_not_repeated(tmp_path):
    from accelkit.runtimes.openvino_lm import OpenVinoLm
    from accelkit.techniques.openvino_prompt_lookup import openvino_prompt_lookup

    model = _model()
    ids = torch.tensor([[45, 58, 16, 30, 40, 48, 9, 7]])  # no id repeats: nothing to copy at first
    ref = _greedy(model, ids, eos_token_id=None)
    stored = openvino_prompt_lookup(model, store_from=_store_batches(), max_new_tokens=N_NEW)
    assert stored.extra["store_prompts"] == 11 and len(stored.lookup_store) > 0
    padded, mask = mf.left_padded_batch(100)
    for row, m in zip(padded, mask, strict=True):  # padding never enters the store
        if not m.all():
            assert (0, int(row[m.bool()][0])) not in stored.lookup_store.table
    out, reads = _reads(stored, ids)
    plain_out, plain_reads = _reads(openvino_prompt_lookup(model), ids)
    assert torch.equal(out, ref) and torch.equal(plain_out, ref)
    assert len(reads) < len(plain_reads)  # the store's drafts were kept where the row had none
    loaded = OpenVinoLm.load(tmp_path, stored.save(tmp_path))
    loaded_out, loaded_reads = _reads(loaded, ids)
    assert torch.equal(loaded_out, ref) and loaded_reads == reads


@pytest.mark.parametrize("field,value", [("draft_tokens", 0), ("draft_tokens", 17), ("ngram", 0), ("threads", 0),
                                         ("store_prompts", -1)])
def test_bad_settings_name_the_field(field, value):
    from accelkit.techniques.openvino_prompt_lookup import PromptLookupConfig

    with pytest.raises(ConfigError, match=field):
        PromptLookupConfig(**{field: value})


def test_lookup_needs_a_graph_with_every_positions_logits():
    from accelkit.export.openvino_lm import export_stateful_lm
    from accelkit.runtimes.openvino_lm import OpenVinoLm, OpenVinoLmConfig

    with pytest.raises(ConfigError, match="all_logits=True"):
        OpenVinoLm(export_stateful_lm(_model()), OpenVinoLmConfig(lookup_tokens=4))


def test_a_model_that_is_not_a_causal_lm_is_refused():
    from accelkit.techniques.openvino_prompt_lookup import openvino_prompt_lookup

    with pytest.raises(ConfigError, match="causal LM"):
        openvino_prompt_lookup(torch.nn.Linear(4, 4))
