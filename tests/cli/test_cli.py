import json
import subprocess
import sys

import pytest

from accelkit.cli import main


def _run(args, capsys):
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_env_json_has_flags_and_recommendations(capsys):
    from typer.testing import CliRunner

    from accelkit.cli import app

    res = CliRunner().invoke(app, ["env", "--json"])
    assert res.exit_code == 0
    facts = json.loads(res.stdout)
    assert {"cpu", "cuda", "versions", "recommend"} <= set(facts)
    assert facts["recommend"]["infer_precision"] in ("bf16", "fp16", "fp32")
    # what this machine or install cannot run, each with its reason
    assert all(isinstance(why, str) and why for why in facts["not_offered"].values())
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        assert "not installed" in facts["not_offered"]["openvino"]
    if "AVX512_FP16" not in facts["cpu"]["isa"] and not facts["cuda"]["available"]:
        assert "AVX512_FP16" in facts["not_offered"]["fp16-cast"]


@pytest.mark.parametrize(
    "args, match",
    [
        (["bench", "--workload", "nope"], "unknown"),
        (["bench", "--workload", "digits", "--variants", "zzz"], "not available"),
        (["bench", "--workload", "digits", "--device", "cuda"], "CUDA"),
        (["bench", "--workload", "digits", "--task", "fly"], "--task"),
        (["bench", "--workload", "digits", "--out", "/proc/nope/r.json"], "cannot create"),
        (["bench", "--workload", "minilm", "--size", "large"], "apply to --task train"),
        (["bench", "--task", "train", "--workload", "digits", "--size", "large"], "gpt-mini only"),
        (["bench", "--task", "train", "--workload", "gpt-mini", "--size", "huge"], "size='huge'"),
        (["bench", "--workload", "digits", "--min-quality", "accuracy"], "METRIC=NUMBER"),
        (["optimize", "--min-quality", "cosine_min=high"], "METRIC=NUMBER"),
        (["bench", "--task", "train", "--workload", "digits", "--min-quality", "val_loss=1"], "inference"),
        (["bench", "--workload", "digits", "--variants", "bf16", "--limit", "32", "--repeats", "1",
          "--min-quality", "cosine_min=0.97"], "not a metric digits reports"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, match, capsys):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA present")
    code, _, err = _run(args, capsys)
    assert code == 2
    assert match in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_misspelt_option_is_a_usage_message_and_exit_2_not_a_traceback(capsys):
    code, _, err = _run(["bench", "--no-such-option"], capsys)
    assert code == 2 and "No such option" in err and "Traceback" not in err


def test_report_of_wrong_schema_exits_2(tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text('{"schema": "x"}')
    code, _, err = _run(["report", str(bad), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and "schema" in err


def test_list_prints_names_one_a_line(capsys):
    code, out, _ = _run(["bench", "--workload", "digits", "--list"], capsys)
    assert code == 0
    names = out.split()
    assert names[0] == "default" and "bf16" in names and "dynamic-padding" not in names


def test_import_accelkit_is_light():
    code = ("import sys, accelkit, accelkit.cli; "
            "bad=[m for m in ('transformers','onnxruntime','torch_pruning','torchao') if m in sys.modules]; "
            "import torch; assert not torch.cuda.is_initialized(); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
