"""``accelkit prune`` / ``accelkit distill``: bad input is one line and exit code 2."""

from __future__ import annotations

import pytest

from accelkit.cli import main


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # tiny models gain nothing from a second thread, and on a shared CI box idle-spinning
    # OpenMP workers make them many times slower
    from accelkit.measure import thread_count

    with thread_count(1):
        yield


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prune", "--ratio", "1.5"], "ratio=1.5"),
        (["prune", "--method", "random"], "--method 'random'"),
        (["prune", "--importance", "guess"], "importance='guess'"),
        (["prune", "--method", "heads", "-w", "digits"], "prunes BERT-style encoders"),
        (["prune", "--method", "heads", "-w", "minilm", "--ratio", "0"], "ratio"),
        (["distill", "-w", "minilm", "--layers", "0,x"], "--layers '0,x'"),
        (["distill", "-w", "gpt-mini"], "distill supports minilm and digits"),
    ],
)
def test_bad_compress_input_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_prune_cli_saves_a_loadable_model(tmp_path, capsys):
    import torch

    from accelkit.techniques.prune import load_pruned
    from accelkit.workloads.digits import DigitsCNN

    main(["prune", "-w", "digits", "--steps", "1", "--finetune-epochs", "0", "--out", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert '"params_after"' in out and "saved to" in out
    model = load_pruned(tmp_path / "p", DigitsCNN(64))
    assert model.blocks[1][0].out_channels == 64 and model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
