"""A user's --data file: every format read back, column inference, one-line errors, the split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from accelkit.data.user_files import UserData, read_data_file, split_data
from accelkit.errors import ConfigError, DataFileError


def _write_image(path: Path, value: int = 0, fmt: str | None = None) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path, format=fmt)
    return path


def _error(path: Path, **kw: str) -> str:
    with pytest.raises(DataFileError) as info:
        read_data_file(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg or path.name in msg
    return msg


# --- formats read back ------------------------------------------------------------------


def test_txt_one_item_a_line_skips_blanks_and_strips_trailing_space(tmp_path: Path) -> None:
    p = tmp_path / "data.txt"
    p.write_bytes("\ufefffirst line  \r\n\n   \n  indented\tkept\t\nlast".encode())
    data = read_data_file(p)
    assert data.kind == "text"
    assert data.items == ["first line", "  indented\tkept", "last"]
    assert data.labels is None
    assert data.source == p
    assert len(data) == 3


def test_other_text_suffix_reads_as_lines(tmp_path: Path) -> None:
    p = tmp_path / "data.text"
    p.write_text("a\nb\n", encoding="utf-8")
    assert read_data_file(p).items == ["a", "b"]


def test_jsonl_text_and_label_keys(tmp_path: Path) -> None:
    p = tmp_path / "data.jsonl"
    rows = [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    data = read_data_file(p)
    assert data.items == ["good film", "bad film"]
    assert data.labels == [1, 0]


@pytest.mark.parametrize(
    ("rows", "kw", "items", "labels"),
    [
        ([{"sentence": "s1", "id": 1}, {"sentence": "s2", "id": 2}], {}, ["s1", "s2"], None),
        ([{"body": "b1", "n": 3}, {"body": "b2", "n": 4}], {}, ["b1", "b2"], None),
        # the only string field once the label is set aside
        (
            [{"body": "b1", "labels": "x"}, {"body": "b2", "labels": "y"}],
            {},
            ["b1", "b2"],
            ["x", "y"],
        ),
        (
            [{"a": "a1", "b": "b1", "y": 5}, {"a": "a2", "b": "b2", "y": 6}],
            {"text_column": "b", "label_column": "y"},
            ["b1", "b2"],
            [5, 6],
        ),
    ],
)
def test_jsonl_column_inference(
    tmp_path: Path, rows: list[dict], kw: dict, items: list, labels: list | None
) -> None:
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    data = read_data_file(p, **kw)
    assert data.items == items
    assert data.labels == labels


def test_csv_and_tsv_with_quoted_fields(tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    csv_path.write_text(
        'id,text,label\n1,"hello, world",pos\n2,"say ""hi""",neg\n', encoding="utf-8"
    )
    data = read_data_file(csv_path)
    assert data.items == ["hello, world", 'say "hi"']
    assert data.labels == ["pos", "neg"]

    tsv_path = tmp_path / "data.tsv"
    tsv_path.write_text("body\tcls\none, two\ta\nthree\tb\n", encoding="utf-8")
    data = read_data_file(tsv_path, text_column="body", label_column="cls")
    assert data.items == ["one, two", "three"]
    assert data.labels == ["a", "b"]


def test_csv_single_column_is_the_text(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_text("review\nfine\n\nawful\n", encoding="utf-8")
    assert read_data_file(p).items == ["fine", "awful"]


def test_image_folder_with_class_subfolders_gives_labels(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_image(root / "dog" / "b.png", 10)
    _write_image(root / "cat" / "z.jpg", 20)
    _write_image(root / "cat" / "deep" / "a.bmp", 30)
    _write_image(root / "dog" / ".hidden.png", 40)
    data = read_data_file(root)
    assert data.kind == "images"
    assert data.items == [root / "cat/deep/a.bmp", root / "cat/z.jpg", root / "dog/b.png"]
    assert data.labels == ["cat", "cat", "dog"]


def test_image_folder_with_loose_images_has_no_labels(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_image(root / "1.png")
    _write_image(root / "sub" / "2.gif")
    _write_image(root / "3.webp")
    data = read_data_file(root)
    assert [p.name for p in data.items] == ["1.png", "3.webp", "2.gif"]
    assert data.labels is None


def test_npy_round_trips_as_inputs_tensor(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(p, arr)
    data = read_data_file(p)
    assert data.kind == "tensors"
    assert len(data) == 4
    assert set(data.tensors) == {"inputs"}
    assert torch.equal(data.tensors["inputs"], torch.from_numpy(arr))


def test_safetensors_inputs_and_labels(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "d.safetensors"
    x, y = torch.randn(5, 2), torch.arange(5)
    save_file({"inputs": x, "labels": y, "extra": torch.zeros(1)}, str(p))
    data = read_data_file(p)
    assert len(data) == 5
    assert torch.equal(data.tensors["inputs"], x)
    assert torch.equal(data.tensors["labels"], y)

    single = tmp_path / "one.safetensors"
    save_file({"features": x}, str(single))
    assert torch.equal(read_data_file(single).tensors["inputs"], x)


def test_subset_picks_rows_in_the_given_order(tmp_path: Path) -> None:
    text = UserData("text", ["a", "b", "c"], [0, 1, 2], tmp_path)
    sub = text.subset([2, 0])
    assert (sub.items, sub.labels, sub.kind) == (["c", "a"], [2, 0], "text")
    tens = UserData(
        "tensors",
        [],
        None,
        tmp_path,
        {"inputs": torch.arange(6).view(3, 2), "labels": torch.tensor([7, 8, 9])},
    )
    sub = tens.subset([1, 2])
    assert sub.tensors["inputs"].tolist() == [[2, 3], [4, 5]]
    assert sub.tensors["labels"].tolist() == [8, 9]
    with pytest.raises(IndexError):
        text.subset([-1])


# --- one-line errors ----------------------------------------------------------------------


def test_missing_path_and_unknown_suffix(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope.csv")
    assert "does not exist" in msg and "--data" in msg
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"x")
    msg = _error(p)
    assert "'.xlsx'" in msg and ".jsonl" in msg and ".safetensors" in msg and "folder" in msg


def test_data_file_error_is_a_config_error() -> None:
    assert issubclass(DataFileError, ConfigError)


@pytest.mark.parametrize("raw", [b"ok\x00\x01\x02\n", b"caf\xe9\n"])
def test_binary_text_file(tmp_path: Path, raw: bytes) -> None:
    p = tmp_path / "data.txt"
    p.write_bytes(raw)
    msg = _error(p)
    assert "not a UTF-8 text file" in msg and "one item a line" in msg


def test_binary_csv_is_refused_the_same_way(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_bytes(b"text\n\x00\xff\n")
    assert "not a UTF-8 text file" in _error(p)


def test_csv_missing_named_column_lists_the_columns(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_text("id,body\n1,hello\n", encoding="utf-8")
    msg = _error(p, text_column="sentence")
    assert msg.endswith("has no column 'sentence' (columns: id, body); pass --text-column body")
    msg = _error(p, label_column="y")
    assert "no column 'y'" in msg and "id, body" in msg and "--label-column" in msg


def test_csv_ambiguous_text_column_names_the_flag(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_text("id,body\n1,hello\n2,bye\n", encoding="utf-8")
    msg = _error(p)
    assert "id, body" in msg and "--text-column body" in msg


def test_csv_ragged_row_names_its_line(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    p.write_text("text,label\na,1\nb,2,3\n", encoding="utf-8")
    assert "line 3" in _error(p)


def test_jsonl_bad_line_gives_its_number(tmp_path: Path) -> None:
    p = tmp_path / "data.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": oops}\n', encoding="utf-8")
    msg = _error(p)
    assert "line 3 is not valid JSON" in msg


def test_jsonl_non_object_and_missing_key(tmp_path: Path) -> None:
    p = tmp_path / "data.jsonl"
    p.write_text('{"text": "a"}\n[1, 2]\n', encoding="utf-8")
    assert "line 2 is a JSON list, not an object" in _error(p)
    p.write_text('{"text": "a"}\n{"body": "b"}\n', encoding="utf-8")
    assert "line 2 has no key 'text'" in _error(p)


def test_jsonl_no_text_key_lists_keys_and_names_flag(tmp_path: Path) -> None:
    p = tmp_path / "data.jsonl"
    p.write_text('{"title": "t", "body": "b", "n": 1}\n' * 2, encoding="utf-8")
    msg = _error(p)
    assert "title, body, n" in msg and "--text-column" in msg
    msg = _error(p, text_column="sentence")
    assert "no key 'sentence'" in msg and "title, body, n" in msg


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_image(root / "a" / "ok.png")
    bad = root / "b" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    msg = _error(root)
    assert str(bad) in msg and "does not decode" in msg


def test_truncated_image_is_named(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "ok.png")
    cut = root / "cut.png"
    raw = (root / "ok.png").read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])  # a header that opens, pixel data that ends early
    msg = _error(root)
    assert str(cut) in msg and "does not decode" in msg


def test_folder_without_images(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    (root / "notes.txt").write_text("x")
    assert "has no images" in _error(root)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("data.txt", "\n  \n"),
        ("data.jsonl", "\n"),
        ("data.csv", ""),
        ("data.csv", "text,label\n"),
    ],
)
def test_empty_file_has_no_items(tmp_path: Path, name: str, content: str) -> None:
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    assert "has no items" in _error(p)


def test_one_item_is_too_few(tmp_path: Path) -> None:
    p = tmp_path / "data.txt"
    p.write_text("only\n", encoding="utf-8")
    msg = _error(p)
    assert "1 item" in msg and "at least 2" in msg


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    msg = _error(p)
    assert "pickled" in msg and "numpy.save" in msg


def test_safetensors_label_length_mismatch(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "d.safetensors"
    save_file({"inputs": torch.zeros(4, 2), "labels": torch.zeros(3)}, str(p))
    msg = _error(p)
    assert "4 inputs" in msg and "3 rows" in msg


def test_safetensors_without_inputs_lists_keys(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "d.safetensors"
    save_file({"a": torch.zeros(2), "b": torch.zeros(2)}, str(p))
    msg = _error(p)
    assert "a, b" in msg and "'inputs'" in msg


def test_corrupt_safetensors_and_npy(tmp_path: Path) -> None:
    p = tmp_path / "d.safetensors"
    p.write_bytes(b"garbage")
    assert "not a valid .safetensors file" in _error(p)
    q = tmp_path / "d.npy"
    q.write_bytes(b"garbage")
    assert "not a valid .npy file" in _error(q)


def test_column_options_on_a_file_without_columns(tmp_path: Path) -> None:
    p = tmp_path / "data.txt"
    p.write_text("a\nb\n", encoding="utf-8")
    assert "--text-column" in _error(p, text_column="text")


# --- split ----------------------------------------------------------------------------------


def _text(n: int, tmp_path: Path) -> UserData:
    return UserData("text", [f"item{i}" for i in range(n)], list(range(n)), tmp_path / "d.txt")


def test_split_is_deterministic_disjoint_and_sized(tmp_path: Path) -> None:
    data = _text(10, tmp_path)
    calib, held, report = split_data(data, seed=3)
    calib2, held2, report2 = split_data(data, seed=3)
    assert (calib.items, held.items, report) == (calib2.items, held2.items, report2)
    assert len(calib) == 5 and len(held) == 5
    assert set(calib.items).isdisjoint(held.items)
    assert set(calib.items) | set(held.items) == set(data.items)
    assert held.labels == sorted(held.labels)  # held-out sorted ascending
    assert calib.labels == [int(s[4:]) for s in calib.items]  # labels travel with items
    assert report == {"n_total": 10, "n_calib": 5, "n_heldout": 5, "n_unused": 0, "seed": 3}
    assert split_data(data, seed=4)[0].items != calib.items


def test_split_pinned_permutation(tmp_path: Path) -> None:
    # random.Random(seed).shuffle is stable across machines and Python 3 versions: pin it
    import random

    perm = list(range(10))
    random.Random(0).shuffle(perm)
    calib, held, _ = split_data(_text(10, tmp_path), calib_size=3, seed=0)
    assert calib.labels == perm[:3]
    assert held.labels == sorted(perm[3:])


def test_split_sizes_and_unused_count(tmp_path: Path) -> None:
    data = _text(20, tmp_path)
    calib, held, report = split_data(data, calib_size=4, eval_size=6, seed=1)
    assert (len(calib), len(held)) == (4, 6)
    assert report["n_unused"] == 10
    assert report["n_calib"] + report["n_heldout"] + report["n_unused"] == report["n_total"] == 20
    _, held, report = split_data(data, calib_size=15, eval_size=100)
    assert len(held) == 5 and report["n_unused"] == 0


def test_split_defaults_cap_at_1024(tmp_path: Path) -> None:
    data = _text(3000, tmp_path)
    calib, held, report = split_data(data)
    assert (len(calib), len(held), report["n_unused"]) == (1024, 1024, 952)
    calib, held, _ = split_data(_text(2, tmp_path))
    assert (len(calib), len(held)) == (1, 1)


def test_split_tensors(tmp_path: Path) -> None:
    data = UserData(
        "tensors",
        [],
        None,
        tmp_path,
        {"inputs": torch.arange(8).view(4, 2), "labels": torch.arange(4)},
    )
    calib, held, _ = split_data(data, seed=2)
    rows = calib.tensors["labels"].tolist() + held.tensors["labels"].tolist()
    assert sorted(rows) == [0, 1, 2, 3]
    assert calib.tensors["inputs"][:, 0].tolist() == [
        2 * r for r in calib.tensors["labels"].tolist()
    ]


def test_split_refuses_calib_size_that_leaves_nothing_held_out(tmp_path: Path) -> None:
    data = _text(5, tmp_path)
    with pytest.raises(DataFileError, match="5 items") as info:
        split_data(data, calib_size=5)
    assert "held out" in str(info.value)
    with pytest.raises(DataFileError):
        split_data(data, calib_size=0)
    with pytest.raises(DataFileError):
        split_data(data, eval_size=0)
