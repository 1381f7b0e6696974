"""The early-exit CLI turns bad input into one line and exit code 2."""

from __future__ import annotations

import pytest

from accelkit.cli import main


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["early-exit", "--workload", "gpt-mini"], "early exit is set up for"),
        (["early-exit", "--workload", "digits", "--criterion", "vibes"], "criterion='vibes'"),
        (["layer-skip", "--workload", "digits"], "layer skipping is set up for"),
        (["routed-depth", "--workload", "digits"], "routed depth is set up for"),
        (["routed-depth", "--budget", "3"], "max_quality_drop=3.0"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
