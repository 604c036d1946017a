"""The bad-input corpus (tests/corpus/cases.yaml): every malformed input gets one line naming
the culprit, exit code 2, no traceback, and nothing written outside its run directory."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from metasched.cli import main

CORPUS = Path(__file__).parent / "corpus"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def _tree(root: Path, skip: set[Path]) -> dict[str, str]:
    """Every file under ``root`` (outside ``skip``) and the hash of its content."""
    found = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
    return found


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys, glyphs) -> None:
    if case.get("unless") == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a relative path written by mistake lands here, and is seen
    run, copy = tmp_path / "run", tmp_path / "copy"
    if "copy" in case:
        shutil.copytree(CORPUS / case["copy"], copy)
    values = {"corpus": str(CORPUS), "run": str(run), "copy": str(copy)}
    argv = [a.format(**values) for a in case["argv"]]
    before = _tree(CORPUS, set()), _tree(tmp_path, {run, copy})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)

    err = capsys.readouterr().err
    print(err)
    assert not caught, [str(w.message) for w in caught]  # the CLI would print each on a line
    lines = [line for line in err.split("\n") if line.strip()]
    last = lines[-1].rsplit("\r", 1)[-1] if lines else ""  # after cleared progress bars
    assert code == 2, err
    assert last.startswith("metasched: error: "), err
    assert "Traceback" not in err and len(err.strip().split("\n")) == 1, err
    for name in case["names"]:
        assert name.format(**values) in last, (name, last)
    assert (_tree(CORPUS, set()), _tree(tmp_path, {run, copy})) == before
    assert not (work / "pwned-by-corpus").exists()
