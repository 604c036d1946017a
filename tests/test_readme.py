"""The README's Python API example runs against today's API."""

from __future__ import annotations

import re
from pathlib import Path


def test_the_readme_python_example_runs_and_chooses_two_tasks() -> None:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    # the example leaves the reward to the reader: any number stands in for it
    code = blocks[0].replace("reward = ...", "reward = 0.1")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    chosen = namespace["chosen"]
    assert len(chosen) == 2 and len(set(chosen.tolist())) == 2  # type: ignore[attr-defined]
