"""Tiny shipped model folders (a 2-layer sentence-embedding model as ONNX, a 2-layer classifier in
PyTorch) and a corpus of sentences, built once per session."""

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
def sentences() -> list[str]:
    return mf.sentences(300)
