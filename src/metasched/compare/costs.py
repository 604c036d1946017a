"""Each method's measured cost per iteration, kept in ``OUT/costs.json`` so that a resumed or
repeated comparison at equal compute plans the same runs (delete the file to measure again).

Example:
    >>> from pathlib import Path
    >>> load_costs(Path("no-such-study"))
    {}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metasched.config import Config
from metasched.cpu import busy_machine, cpu_name
from metasched.errors import MetaschedError
from metasched.files import atomic_write
from metasched.training.cost import IterationCost, calibrate, computation, computation_changes

COSTS = "costs.json"


def load_costs(out: Path) -> dict[str, IterationCost]:
    path = out / COSTS
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())["methods"]
        return {name: IterationCost(**v) for name, v in values.items()}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise MetaschedError(
            f"{str(path)!r} is damaged ({type(error).__name__}); delete it to measure the costs"
            " again"
        ) from error


def method_costs(
    configs: dict[str, Config],
    uniform: Config,
    out: Path,
    say: Callable[[str], None],
    threads: int | None = None,
) -> dict[str, IterationCost]:
    """Each method's cost per iteration: from ``OUT/costs.json``, measuring (and adding) the
    methods it lacks and those measured with other settings (another pool size, model, ...:
    :func:`computation_changes`; a cost recorded without its settings is trusted); it times
    them with ``threads`` torch threads, as the runs will run. A method whose computation is a
    measured one's (the same method with a decayed learning rate) takes that one's cost."""
    costs = load_costs(out)
    measured = _recorded(out, "computations")
    current = {name: computation(c) for name, c in configs.items()}
    changed = []
    for name in configs.keys() & costs.keys():
        changes = computation_changes(measured.get(name, {}), current[name])
        if changes:
            say(f"the cost of {name} was measured with other settings ({'; '.join(changes)});"
                " measuring it again")  # fmt: skip
            changed.append(name)
    missing = {n: c for n, c in configs.items() if n not in costs or n in changed}
    new = bool(missing)
    where = _measured_on(out)
    # A method that computes what a measured one does (e.g. amortised+cosine, amortised) costs
    # the same: one measurement, so that noise does not give the two different budgets.
    known = {n: c for n, c in {**measured, **current}.items() if n in costs and n not in missing}
    for name in list(missing):
        twin = next((n for n, c in known.items() if c == current[name]), None)
        if twin is not None:
            costs[name] = costs[twin]
            where[name] = f"{twin}'s cost (the same computation)"
            say(f"cost of {name}: {twin}'s, the same computation")
            del missing[name]
    busy = busy_machine() if missing else None
    if missing:
        say(f"measuring the cost of {', '.join(missing)} against uniform sampling")
        if busy:
            say(
                f"warning: {busy}; cost ratios measured with more processes than cores can be"
                f" far off: measure on a quiet machine, or keep a {COSTS} measured on one"
            )
        costs.update(calibrate(missing, uniform, say=say, threads=threads))
        where.update({name: f"{cpu_name()}{f' ({busy})' if busy else ''}" for name in missing})
    if new:
        atomic_write(
            out / COSTS,
            json.dumps(
                {
                    "reference": "uniform sampling, measured in the same process",
                    "measured_on": dict(sorted(where.items())),
                    "computations": dict(sorted({**measured, **current}.items())),
                    "methods": {name: cost.to_dict() for name, cost in sorted(costs.items())},
                },
                indent=1,
            ),
        )
    return costs


def _measured_on(out: Path) -> dict[str, str]:
    """Where each method in ``OUT/costs.json`` was measured (a file written before this was
    recorded per method names one machine for all)."""
    path = out / COSTS
    if not path.is_file():
        return {}
    values = json.loads(path.read_text())
    if "measured_on" in values:
        return dict(values["measured_on"])
    return {name: str(values.get("cpu", "unknown")) for name in values.get("methods", {})}


def _recorded(out: Path, field: str) -> dict[str, Any]:
    """``field`` of ``OUT/costs.json`` by method (empty if absent)."""
    path = out / COSTS
    return dict(json.loads(path.read_text()).get(field, {})) if path.is_file() else {}
