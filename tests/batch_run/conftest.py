"""Tiny shipped model folders (a 2-layer sentence-embedding model as ONNX, a 2-layer classifier in
PyTorch, a 2-layer random Llama writing text) and a corpus of sentences, built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> dict[str, Path]:
    from accelkit.saving import save
    from accelkit.variants import build_variant
    from accelkit.workloads import workload_from_model

    root = tmp_path_factory.mktemp("shipped")
    st = workload_from_model(mf.sentence_transformers_folder(root), mf.text_file(root, 40))
    cls = workload_from_model(mf.bert_classifier_folder(root), mf.labelled_csv(root, 40), text_column="body")
    return {
        "embedding": save(build_variant("onnx", st.build_model(), st.default_settings(), st),
                          root / "st-onnx", workload=st),
        "classifier": save(build_variant("baseline", cls.build_model(), cls.default_settings(), cls),
                           root / "cls", workload=cls),
    }


@pytest.fixture(scope="session")
def shipped_generator(tmp_path_factory) -> Path:
    """A random 2-layer Llama saved as a shipped text-generation folder (fp32, measured with 5 new tokens)."""
    from accelkit.saving import save
    from accelkit.variants import build_variant
    from accelkit.workloads import workload_from_model

    root = tmp_path_factory.mktemp("shipped-generator")
    wl = workload_from_model(mf.llama_folder(root), mf.prompts_file(root, 8), task="text-generation",
                             max_new_tokens=5)
    return save(build_variant("default", wl.build_model(), wl.default_settings(), wl), root / "llama",
                "default", workload=wl)


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return mf.sentences(300)
