"""Numbers that are not numbers, and output folders holding the user's files."""

from __future__ import annotations

import sys
import types

import pytest

import accelkit.optimize
from accelkit.cli import main
from accelkit.errors import ConfigError
from accelkit.workloads import get_workload


def _code(args):
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture
def user_workload(tmp_path, monkeypatch):
    """Write module ``hostile_wl_<n>`` whose make() returns the given tensors; yield a factory."""
    made = []

    def factory(body: str) -> str:
        name = f"hostile_wl_{len(made)}"
        header = "import torch\ndef make():\n    model = torch.nn.Linear(4, 3)\n    x = torch.randn(16, 4)\n"
        (tmp_path / f"{name}.py").write_text(header + "    " + body + "\n")
        made.append(name)
        return f"{name}:make"

    monkeypatch.syspath_prepend(str(tmp_path))
    yield factory
    for name in made:
        sys.modules.pop(name, None)


def test_nan_in_user_inputs_is_named_up_front(user_workload):
    spec = user_workload("x[5, 2] = float('nan')\n    return {'model': model, 'inputs': x}")
    with pytest.raises(ConfigError, match=r"inputs holds 1 NaN and 0 Inf values \(first in row 5\)"):
        get_workload(spec)


def test_inf_in_calibration_tensor_is_named_up_front(user_workload):
    spec = user_workload("c = torch.randn(8, 4); c[3, 0] = float('inf')\n"
                         "    return {'model': model, 'inputs': x, 'calib_inputs': c}")
    with pytest.raises(ConfigError, match="calib_inputs holds 0 NaN and 1 Inf"):
        get_workload(spec)


def test_bench_with_nan_inputs_exits_2(user_workload, capsys):
    spec = user_workload("x[0, 0] = float('nan')\n    return {'model': model, 'inputs': x}")
    assert _code(["bench", "--workload", spec, "--variants", "baseline"]) == 2
    assert "NaN" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["nan", "inf", "-0.1"])
def test_optimize_rejects_a_budget_that_is_not_a_finite_nonnegative_number(budget, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(accelkit.optimize, "optimize", lambda *a, **k: pytest.fail("the search ran"))
    code = _code(["optimize", "--workload", "digits", "--max-quality-drop", budget, "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--max-quality-drop" in capsys.readouterr().err


def test_optimize_refuses_an_out_folder_with_the_users_files(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(accelkit.optimize, "optimize",
                        lambda cfg, out, **k: calls.append(out) or types.SimpleNamespace(message="ok"))
    proj = tmp_path / "proj"
    (proj / "model").mkdir(parents=True)
    (proj / "model" / "notes.txt").write_text("keep me")
    args = ["optimize", "--workload", "digits", "--out", str(proj)]
    assert _code(args) == 2
    assert "model/notes.txt" in capsys.readouterr().err and not calls
    assert _code([*args, "--overwrite"]) == 0 and calls
    assert (proj / "model" / "notes.txt").read_text() == "keep me"
