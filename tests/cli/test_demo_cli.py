"""``accelkit demo`` on a tiny search: a model that cannot be saved is one line of its output and
no model folder, never a traceback or a warning."""

from __future__ import annotations

import json
import warnings

import pytest

from accelkit.optimize import OptimizeConfig


def test_the_demo_says_so_when_no_model_can_be_saved(tmp_path, monkeypatch, capsys):
    import accelkit.optimize
    from accelkit.cli import main
    from accelkit.runtimes import ShipError
    from accelkit.runtimes.torch_eager import TorchEager

    tiny = OptimizeConfig("digits", max_quality_drop=0.005, batch_size=64, time_budget_s=600, screen_limit=128,
                          eval_limit=128, repeats=1, candidates=["bf16"])
    monkeypatch.setattr(accelkit.optimize, "DEMO_CONFIGS", (tiny,))

    def refuse(self):
        raise ShipError("a layer the saved format does not record")

    monkeypatch.setattr(TorchEager, "check_saveable", refuse)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exc:
        warnings.simplefilter("always")
        main(["demo", "--out", str(tmp_path)])
        raise SystemExit(0)
    assert exc.value.code == 0
    assert not [w for w in caught if "saved" in str(w.message)]
    out = capsys.readouterr().out
    assert "no model saved to" in out and "a layer the saved format does not record" in out
    assert not (tmp_path / "digits" / "model").exists() and (tmp_path / "report.html").is_file()
    assert json.loads((tmp_path / "digits" / "plan.json").read_text())["shipped"]["name"] is None
    log = tmp_path / "log.txt"  # kept only when something was logged
    assert not log.exists() or "Traceback" not in log.read_text()
