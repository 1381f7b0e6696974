"""A shipped ONNX folder plus write_sentence_transformers_files loads with
SentenceTransformer(folder, backend="onnx"): the files written, the renamed output (checked with
onnxruntime here), and, where sentence-transformers and optimum are installed (.venv-peers), the
load itself, close to the original model's fp32 embeddings."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.errors import ConfigError  # noqa: E402
from accelkit.export.st_layout import write_sentence_transformers_files  # noqa: E402

WRITTEN = ["onnx/model.onnx", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
           "config_sentence_transformers.json"]
PIPELINE = {"pooling": "mean", "normalize": True, "max_length": 48}


class _TokenStates(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(the original sentence-transformers folder, an accelkit-like ONNX folder of it: model.onnx
    with one output named 'output', config.json, tokenizer files)."""
    from transformers import AutoModel, AutoTokenizer

    root = tmp_path_factory.mktemp("st-layout")
    original = mf.sentence_transformers_folder(root)
    folder = root / "shipped"
    folder.mkdir()
    tok = AutoTokenizer.from_pretrained(str(original), local_files_only=True)
    tok.save_pretrained(str(folder))
    shutil.copy(original / "config.json", folder / "config.json")
    model = AutoModel.from_pretrained(str(original), local_files_only=True).eval()
    enc = tok(["a sentence", "another, longer sentence here"], padding=True, return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "output": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TokenStates(model), (enc["input_ids"], enc["attention_mask"]), str(folder / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["output"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    return original, folder


def test_writes_the_layout_and_a_copy_whose_output_optimum_reads(shipped, tmp_path):
    import onnxruntime as ort

    original, src = shipped
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    root_graph = (folder / "model.onnx").read_bytes()
    written = write_sentence_transformers_files(folder, root_graph, PIPELINE)

    assert written == WRITTEN
    assert all((folder / rel).is_file() for rel in written)
    assert not any(p.suffix == ".py" for p in folder.rglob("*"))
    assert (folder / "model.onnx").read_bytes() == root_graph  # accelkit's own graph is untouched
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32 and pooling["pooling_mode_mean_tokens"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    sbert = json.loads((folder / "sentence_bert_config.json").read_text())
    assert sbert["max_seq_length"] == 48 and sbert["model_args"] == {"file_name": "onnx/model.onnx"}

    enc = {"input_ids": np.array([[2, 7, 9, 3]], dtype=np.int64), "attention_mask": np.ones((1, 4), dtype=np.int64)}
    old = ort.InferenceSession(root_graph, providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in old.get_outputs()] == ["output"]
    assert [o.name for o in new.get_outputs()] == ["last_hidden_state"]
    assert [i.name for i in new.get_inputs()] == ["input_ids", "attention_mask"]
    np.testing.assert_array_equal(new.run(None, enc)[0], old.run(None, enc)[0])


@pytest.mark.parametrize("pooling, key", [("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
                                          ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens")])
def test_pooling_and_no_normalize(shipped, tmp_path, pooling, key):
    _, src = shipped
    written = write_sentence_transformers_files(tmp_path, (src / "model.onnx").read_bytes(),
                                                {"pooling": pooling, "normalize": False, "max_length": 16})
    assert written == WRITTEN
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"]
    config = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert [k for k, v in config.items() if k.startswith("pooling_mode_") and v] == [key]


def test_a_graph_already_named_last_hidden_state_is_copied_as_is(shipped, tmp_path):
    import onnx

    _, src = shipped
    model = onnx.load(str(src / "model.onnx"))
    last = next(n for n in model.graph.node if "output" in n.output)
    last.output[:] = ["last_hidden_state" if o == "output" else o for o in last.output]
    model.graph.output[0].name = "last_hidden_state"
    graph = model.SerializeToString()
    write_sentence_transformers_files(tmp_path, graph, PIPELINE)
    copied = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    assert [o.name for o in copied.graph.output] == ["last_hidden_state"]
    assert len(copied.graph.node) == len(model.graph.node)


def test_bad_pipeline_is_refused_before_anything_is_written(shipped, tmp_path):
    _, src = shipped
    graph = (src / "model.onnx").read_bytes()
    with pytest.raises(ConfigError, match="pooling"):
        write_sentence_transformers_files(tmp_path, graph, {"pooling": "weightedmean", "max_length": 16})
    with pytest.raises(ConfigError, match="max_length"):
        write_sentence_transformers_files(tmp_path, graph, {"pooling": "mean", "max_length": 0})
    assert list(tmp_path.iterdir()) == []


def test_sentence_transformers_loads_it_with_backend_onnx(shipped, tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("optimum.onnxruntime")
    from sentence_transformers import SentenceTransformer

    original, src = shipped
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    write_sentence_transformers_files(folder, (folder / "model.onnx").read_bytes(), PIPELINE)
    texts = mf.sentences(40)
    ref = SentenceTransformer(str(original), device="cpu").encode(texts, batch_size=8)
    got = SentenceTransformer(str(folder), backend="onnx").encode(texts, batch_size=8)  # no model_kwargs
    assert got.shape == ref.shape
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, cos.min()
    assert abs(np.linalg.norm(got, axis=1) - 1).max() < 1e-4  # Normalize was loaded
