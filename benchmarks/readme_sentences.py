"""A second English text set for the minilm benchmarks, from outside pydoc and docstrings:
sentences cut from the README descriptions (``*.dist-info/METADATA``) of the packages installed
in the running environment. Nothing is downloaded.

    .venv/bin/python benchmarks/readme_sentences.py [--n 512] [--out out/data/package_readme_sentences.txt]

Deterministic for one set of installed packages (sorted, then shuffled with seed 0).
"""

from __future__ import annotations

import argparse
import random
import re
import sysconfig
from pathlib import Path

from accelkit.workloads.minilm import _sentences_of, pydoc_sentences


def readme_sentences() -> list[str]:
    site = Path(sysconfig.get_paths()["purelib"])
    found: set[str] = set()
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        text = meta.read_text(encoding="utf-8", errors="ignore")
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""  # the description after the headers
        body = re.sub(r"```.*?```", " ", body, flags=re.S)  # code blocks are not prose
        body = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", body)  # markdown links: keep the text
        body = re.sub(r"[#*`>|]", " ", body)
        found.update(s for s in _sentences_of(body) if "http" not in s and "pip install" not in s)
    ordered = sorted(found - set(pydoc_sentences()))
    random.Random(0).shuffle(ordered)
    return ordered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("out/data/package_readme_sentences.txt"))
    args = ap.parse_args()
    sents = readme_sentences()[: args.n]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sents) + "\n", encoding="utf-8")
    print(f"{len(sents)} sentences → {args.out}")


if __name__ == "__main__":
    main()
