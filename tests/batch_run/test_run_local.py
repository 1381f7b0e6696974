"""run_batch in-process: the shipped model's outputs for every item, once each; a run stopped
halfway (an exception, or the process killed) resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from run_outputs import corpus_file, cosine, read_output

from accelkit.batch_run import RunConfig, run_batch
from accelkit.batch_run.parts import SUMMARY_FILE
from accelkit.errors import ConfigError, DataFileError, ModelFolderError
from accelkit.saving import load, save

REPO = Path(__file__).resolve().parents[2]


def test_every_item_once_with_the_shipped_models_embedding(shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences)
    summary = run_batch(shipped["embedding"], path, tmp_path / "out", engine="local", block_size=16, threads=1)
    ids, emb = read_output(tmp_path / "out")
    assert ids == [i for i in range(121) if i != 5]
    expected = load(shipped["embedding"]).encode(list(sentences[:120]))
    assert emb.dtype == np.float32 and cosine(emb, expected).min() >= 0.9999
    assert pq.read_schema(tmp_path / "out" / "part-000000.parquet").field("embedding").type.list_size == 32
    on_disk = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert on_disk == summary
    assert summary["items"] == 120 and summary["blank_rows"] == 1 and summary["rows"] == 121
    assert summary["blocks"] == 8 and summary["actors"] == 1 and summary["items_per_s"] > 0
    import accelkit

    assert accelkit.run_batch is run_batch


def test_a_stopped_run_resumes_to_the_uninterrupted_result(shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences)
    run_batch(shipped["embedding"], path, tmp_path / "whole", engine="local", block_size=16)
    seen = []

    def stop_after_three(stats):
        seen.append(stats["block"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(shipped["embedding"], path, tmp_path / "cut", engine="local", block_size=16,
                  on_block=stop_after_three)
    assert len(list((tmp_path / "cut").glob("part-*.parquet"))) == 3
    again = []
    summary = run_batch(shipped["embedding"], path, tmp_path / "cut", engine="local", block_size=16,
                        resume=True, on_block=lambda s: again.append(s["block"]))
    assert sorted(again) == list(range(3, 8)) and summary["blocks_resumed"] == 3 and summary["items"] == 120
    ids, emb = read_output(tmp_path / "cut")
    whole_ids, whole = read_output(tmp_path / "whole")
    assert ids == whole_ids and len(set(ids)) == 120
    assert cosine(emb, whole).min() >= 0.9999


def test_a_killed_process_resumes_without_losing_or_repeating_an_item(shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences)
    code = (
        "import os, signal, sys\n"
        "from accelkit.batch_run import run_batch\n"
        "def die(stats):\n"
        "    if stats['block'] == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"run_batch({str(shipped['embedding'])!r}, {str(path)!r}, 'out', engine='local', block_size=16)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code.replace("engine='local',", "engine='local', on_block=die,")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 3
    summary = run_batch(shipped["embedding"], path, tmp_path / "out", engine="local", block_size=16, resume=True)
    ids, _ = read_output(tmp_path / "out")
    assert ids == [i for i in range(121) if i != 5] and summary["blocks_resumed"] == 3


def test_a_classifier_writes_the_top_label_and_its_probability(shipped, sentences, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"key": f"doc-{i}", "text": s}) + "\n" for i, s in enumerate(sentences[:20])))
    run_batch(shipped["classifier"], path, tmp_path / "out", engine="local", id_column="key", batch_size=7)
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(20)]
    model = load(shipped["classifier"])
    for r, text in zip(rows, sentences[:20], strict=True):
        probs = torch.softmax(model(**model.tokenizer([text], return_tensors="pt")).logits[0], -1)
        assert r["label"] == ("neg", "neu", "pos")[int(probs.argmax())]
        assert r["score"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_bad_rows_are_counted_or_stop_the_run(shipped, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine"}\n{oops\n{"text": "also fine"}\n')
    summary = run_batch(shipped["embedding"], path, tmp_path / "skip", engine="local")
    assert summary["items"] == 2 and summary["bad_rows"] == 1
    assert summary["bad_row_examples"][0]["row"] == 1
    with pytest.raises(DataFileError, match="row 1 is bad .*--on-bad-row skip"):
        run_batch(shipped["embedding"], path, tmp_path / "fail", engine="local", on_bad_row="fail")
    assert not list((tmp_path / "fail").glob("part-*"))


def test_model_folders_accelkit_run_cannot_use_are_refused(tmp_path, sentences):
    text = corpus_file(tmp_path, sentences, 4)
    with pytest.raises(ModelFolderError, match="does not exist"):
        run_batch(tmp_path / "nope", text, tmp_path / "out", engine="local")
    with pytest.raises(ModelFolderError, match="not an accelkit save"):
        run_batch(tmp_path, text, tmp_path / "out", engine="local")
    plain = save(torch.nn.Linear(2, 2), tmp_path / "plain")
    with pytest.raises(ModelFolderError, match="not self-contained"):
        run_batch(plain, text, tmp_path / "out", engine="local")


@pytest.mark.parametrize("options, message", [
    ({"engine": "spark"}, "--engine"), ({"on_bad_row": "ignore"}, "--on-bad-row"),
    ({"block_size": 0}, "block_size"), ({"engine": "local", "actors": 2}, "--engine ray"),
])
def test_run_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**options)


def test_the_callers_threads_and_environment_are_left_as_they_were(shipped, sentences, tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELKIT_THREADS", raising=False)
    before = torch.get_num_threads()
    run_batch(shipped["embedding"], corpus_file(tmp_path, sentences, 4), tmp_path / "out", engine="local",
              threads=before + 1)
    assert torch.get_num_threads() == before and "ACCELKIT_THREADS" not in os.environ
