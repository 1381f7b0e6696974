"""run_batch over prompts with a shipped text-generation folder: one row per prompt, each id once,
the text ``accelkit.load(folder).generate`` writes for it, with --max-new-tokens passed through."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from run_outputs import corpus_file, prompts_file, read_texts

from accelkit.batch_run import run_batch
from accelkit.errors import ConfigError
from accelkit.saving import load


def test_generation_writes_the_text_generate_writes_for_every_prompt_once(shipped_generator, sentences, tmp_path):
    path, prompts = prompts_file(tmp_path, sentences)
    # blocks of 6 in batches of 3: the same batches (and so the same left padding) as the direct call
    summary = run_batch(shipped_generator, path, tmp_path / "out", engine="local", block_size=6, batch_size=3,
                        max_new_tokens=3, threads=1)
    ids, texts = read_texts(tmp_path / "out")
    assert ids == list(range(len(prompts))) and summary["items"] == len(prompts) and summary["blocks"] == 4
    assert pq.read_schema(tmp_path / "out" / "part-000000.parquet").names == ["id", "text"]
    model = load(shipped_generator)
    expected = model.generate(prompts, max_new_tokens=3, batch_size=3)
    assert texts == expected
    assert any(texts) and expected != model.generate(prompts, max_new_tokens=1, batch_size=3)


def test_without_max_new_tokens_the_folders_own_count_is_used(shipped_generator, sentences, tmp_path):
    path, prompts = prompts_file(tmp_path, sentences, 4)
    run_batch(shipped_generator, path, tmp_path / "out", engine="local", batch_size=2)
    assert read_texts(tmp_path / "out")[1] == load(shipped_generator).generate(prompts, batch_size=2)


def test_max_new_tokens_is_refused_where_it_does_not_fit(shipped, shipped_generator, sentences, tmp_path):
    with pytest.raises(ConfigError, match="--max-new-tokens is for text-generation models"):
        run_batch(shipped["embedding"], corpus_file(tmp_path, sentences, 4), tmp_path / "out", engine="local",
                  max_new_tokens=3)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        run_batch(shipped_generator, corpus_file(tmp_path, sentences, 4), tmp_path / "out", engine="local",
                  max_new_tokens=0)


def test_seed_samples_what_generate_samples_and_a_resume_writes_the_same(shipped_generator, sentences, tmp_path):
    from accelkit.errors import OutputPathError

    path, prompts = prompts_file(tmp_path, sentences)
    model = load(shipped_generator)
    greedy = model.generate(prompts, max_new_tokens=4, batch_size=3)
    # blocks of 6 in batches of 3: block b's batches get seed + 6b + 0 and + 3, as the direct call's do
    run_batch(shipped_generator, path, tmp_path / "out", engine="local", block_size=6, batch_size=3,
              max_new_tokens=4, threads=1, seed=5)
    texts = read_texts(tmp_path / "out")[1]
    assert texts == model.generate(prompts, max_new_tokens=4, batch_size=3, seed=5) != greedy
    assert texts != model.generate(prompts, max_new_tokens=4, batch_size=3, seed=6)
    # a resume with the blocks half written draws the same tokens for the rest
    for part in sorted((tmp_path / "out").glob("part-*.parquet"))[2:]:
        part.unlink()
    run_batch(shipped_generator, path, tmp_path / "out", engine="local", block_size=6, batch_size=3,
              max_new_tokens=4, threads=1, seed=5, resume=True)
    assert read_texts(tmp_path / "out")[1] == texts
    with pytest.raises(OutputPathError, match="--seed"):
        run_batch(shipped_generator, path, tmp_path / "out", engine="local", block_size=6, batch_size=3,
                  max_new_tokens=4, threads=1, seed=6, resume=True)


def test_seed_is_refused_where_it_does_not_fit(shipped, sentences, tmp_path):
    with pytest.raises(ConfigError, match="--seed is for text-generation models"):
        run_batch(shipped["embedding"], corpus_file(tmp_path, sentences, 4), tmp_path / "out", engine="local", seed=1)
    with pytest.raises(ConfigError, match="--seed -1"):
        run_batch(shipped["embedding"], corpus_file(tmp_path, sentences, 4), tmp_path / "out", engine="local",
                  seed=-1)
    assert not (tmp_path / "out").exists()
