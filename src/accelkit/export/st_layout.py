"""sentence-transformers' files beside a shipped ONNX folder, so the same folder also loads with
``SentenceTransformer(folder, backend="onnx")``.

What sentence-transformers (read in 5.7; the layout is the one 3.x-5.x save) needs for
``backend="onnx"``, beyond the ``config.json`` and tokenizer files accelkit already ships:

- ``modules.json``: the module list: Transformer at the folder root, Pooling in ``1_Pooling``,
  Normalize when the pipeline normalises. Without it sentence-transformers warns and builds
  Transformer + mean pooling, losing cls/max pooling and normalisation.
- ``1_Pooling/config.json``: the pooling mode and the embedding width (the legacy keys every
  release reads; 5.x converts them).
- ``sentence_bert_config.json``: ``max_seq_length`` (else the tokenizer's own maximum is used),
  and ``model_args.file_name = "onnx/model.onnx"``. sentence-transformers looks for
  ``model.onnx`` at the root first, which is accelkit's own graph, whose output optimum cannot
  read; this key points it at the copy below, so no ``model_kwargs`` are needed at load time.
- ``onnx/model.onnx``: a copy of the graph whose token-states output is named
  ``last_hidden_state``, the name optimum's ``ORTModelForFeatureExtraction.forward`` reads
  (accelkit names it ``output``). Optimum feeds only the inputs the graph declares, so
  ``input_ids`` + ``attention_mask`` without ``token_type_ids`` is fine.
- ``config_sentence_transformers.json``: optional; written with cosine similarity and no
  version stamp (a stamp newer than the installed release only makes it warn).

The copy doubles the folder's size on disk; the root ``model.onnx`` and ``plan.json`` (with
its checksums) are left untouched, so ``accelkit.load`` keeps working.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import ConfigError

__all__ = ["ST_ONNX_FILE", "ST_OUTPUT_NAME", "write_sentence_transformers_files"]

ST_ONNX_FILE = "onnx/model.onnx"
ST_OUTPUT_NAME = "last_hidden_state"
_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}


def _renamed_output(onnx_bytes: bytes) -> tuple[bytes, int | None]:
    """The graph with its first output renamed ``last_hidden_state`` (an Identity node after the
    old name, so no other reference to it changes), and that output's last dimension if fixed."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    if not graph.output:
        raise ConfigError("the ONNX graph has no output; expected the token states (batch, seq, hidden)")
    out = graph.output[0]
    dims = out.type.tensor_type.shape.dim
    if dims and len(dims) != 3:
        raise ConfigError(f"the ONNX graph's output {out.name!r} has {len(dims)} dimensions; sentence-transformers "
                          "pools token states of shape (batch, seq, hidden)")
    width = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    if out.name != ST_OUTPUT_NAME:
        taken = {v.name for v in (*graph.input, *graph.output, *graph.initializer)}
        taken.update(o for node in graph.node for o in node.output)
        if ST_OUTPUT_NAME in taken:
            raise ConfigError(f"the ONNX graph already has a tensor named {ST_OUTPUT_NAME!r} that is not its "
                              "first output; cannot rename")
        graph.node.append(helper.make_node("Identity", [out.name], [ST_OUTPUT_NAME], name="accelkit_st_output"))
        out.name = ST_OUTPUT_NAME
    return model.SerializeToString(), width


def _embedding_width(folder: Path, width: int | None) -> int:
    if width:
        return int(width)
    config = folder / "config.json"
    hidden = json.loads(config.read_text(encoding="utf-8")).get("hidden_size") if config.exists() else None
    if not isinstance(hidden, int):
        raise ConfigError(f"{folder}: the ONNX output's width is not fixed and config.json names no hidden_size")
    return hidden


def _write_json(folder: Path, rel: str, data: object) -> str:
    atomic_write_bytes(folder / rel, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return rel


def write_sentence_transformers_files(folder: Path, onnx_bytes: bytes, pipeline: dict, *,
                                      graph_file: str = ST_ONNX_FILE) -> list[str]:
    """Write what SentenceTransformer(folder, backend="onnx") reads beside accelkit's own files; return the relative paths written.

    ``graph_file``: where the graph with the output optimum reads goes; accelkit's shipped folders
    pass ``model.onnx`` (one graph both loaders read: two would make optimum pick by name)."""
    folder = Path(folder)
    pooling = pipeline.get("pooling", "mean")
    if pooling not in _POOLING_KEYS:
        raise ConfigError(f"pooling {pooling!r}: sentence-transformers' Pooling takes one of {list(_POOLING_KEYS)}")
    max_length = pipeline.get("max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ConfigError(f"max_length {max_length!r}: expected a positive integer")
    graph, width = _renamed_output(onnx_bytes)

    atomic_write_bytes(folder / graph_file, graph)
    written = [graph_file]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if pipeline.get("normalize"):
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    written.append(_write_json(folder, "modules.json", modules))
    written.append(_write_json(folder, "1_Pooling/config.json", {
        "word_embedding_dimension": _embedding_width(folder, width),
        **{key: mode == pooling for mode, key in _POOLING_KEYS.items()},
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }))
    # "model_args" (not 5.x's "model_kwargs"): the name 3.x-5.x all read from this file
    written.append(_write_json(folder, "sentence_bert_config.json", {
        "max_seq_length": max_length, "do_lower_case": False, "model_args": {"file_name": graph_file}}))
    written.append(_write_json(folder, "config_sentence_transformers.json", {
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}))
    return written
