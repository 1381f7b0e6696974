"""run_batch on Ray Data (a local ``ray.init(num_cpus=2)``): the same rows as in-process, a run
stopped halfway resumes to the uninterrupted result, and a killed actor's block is retried by Ray
without a second copy of its rows."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from run_outputs import corpus_file, cosine, read_output

from accelkit.batch_run import run_batch
from accelkit.errors import ConfigError, MissingDependencyError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_writes_what_the_local_engine_writes(local_ray, shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences)
    run_batch(shipped["embedding"], path, tmp_path / "local", engine="local", block_size=16)
    summary = run_batch(shipped["embedding"], path, tmp_path / "ray", engine="ray", block_size=16)
    assert summary["engine"] == "ray" and summary["actors"] == 2 and summary["threads_per_actor"] == 1
    assert summary["items"] == 120 and summary["items_per_s_per_actor"] > 0
    ids, emb = read_output(tmp_path / "ray")
    local_ids, local = read_output(tmp_path / "local")
    assert ids == local_ids and cosine(emb, local).min() >= 0.9999


def test_a_stopped_ray_run_resumes_to_the_uninterrupted_result(local_ray, shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences)
    run_batch(shipped["embedding"], path, tmp_path / "whole", engine="local", block_size=4)
    seen = []

    def stop_after_three(stats):
        seen.append(stats["block"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(shipped["embedding"], path, tmp_path / "cut", engine="ray", block_size=4,
                  on_block=stop_after_three)
    written = len(list((tmp_path / "cut").glob("part-*.parquet")))
    # 30 blocks of 4: actors run ahead of the driver by a few blocks, never through all of them
    assert 3 <= written < 30
    summary = run_batch(shipped["embedding"], path, tmp_path / "cut", engine="ray", block_size=4, resume=True)
    assert summary["blocks_resumed"] >= 3 and summary["items"] == 120
    ids, emb = read_output(tmp_path / "cut")
    whole_ids, whole = read_output(tmp_path / "whole")
    assert ids == whole_ids and len(set(ids)) == 120
    assert cosine(emb, whole).min() >= 0.9999


def test_a_killed_actor_is_retried_without_duplicate_rows(local_ray, shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences)
    killed = []

    def kill_the_first_worker(stats):
        if not killed:
            killed.append(stats["worker"])
            os.kill(stats["worker"], signal.SIGKILL)

    summary = run_batch(shipped["embedding"], path, tmp_path / "out", engine="ray", block_size=8,
                        on_block=kill_the_first_worker)
    ids, emb = read_output(tmp_path / "out")
    assert killed and ids == [i for i in range(121) if i != 5] and summary["items"] == 120
    assert np.isfinite(emb).all()


def test_ray_refusals_are_one_line(shipped, sentences, tmp_path, monkeypatch):
    path = corpus_file(tmp_path, sentences, 4)
    with pytest.raises(ConfigError, match="not reachable at 127.0.0.1:9"):
        run_batch(shipped["embedding"], path, tmp_path / "out", engine="ray", address="127.0.0.1:9")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr("accelkit.batch_run.ray_engine.ray_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="--engine local"):
        run_batch(shipped["embedding"], path, tmp_path / "out", engine="ray")
    summary = run_batch(shipped["embedding"], path, tmp_path / "out")  # the default without Ray
    assert summary["engine"] == "local"


def test_more_actors_than_the_cluster_has_cpus_is_refused(local_ray, shipped, sentences, tmp_path):
    path = corpus_file(tmp_path, sentences, 4)
    with pytest.raises(ConfigError, match="need 3 CPUs; the Ray cluster has 2"):
        run_batch(shipped["embedding"], path, tmp_path / "out", engine="ray", actors=3)


def test_ray_writes_the_text_the_local_engine_writes(local_ray, shipped_generator, sentences, tmp_path):
    from run_outputs import prompts_file, read_texts

    path, prompts = prompts_file(tmp_path, sentences, 12)
    run_batch(shipped_generator, path, tmp_path / "local", engine="local", block_size=4, batch_size=2,
              max_new_tokens=3, threads=1)
    summary = run_batch(shipped_generator, path, tmp_path / "ray", engine="ray", block_size=4, batch_size=2,
                        max_new_tokens=3)
    ids, texts = read_texts(tmp_path / "ray")
    assert summary["actors"] == 2 and ids == list(range(12))
    assert (ids, texts) == read_texts(tmp_path / "local")
