"""Reading pickle files that a data set ships, only when the user trusts them.

Unpickling can run arbitrary code, so a pickle is opened only behind ``data.trust_pickles``
(or ``--trust-pickles``), and even then through an unpickler that admits built-in containers
and numpy arrays and nothing else: a data file needs no other class.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from metasched.errors import MetaschedError

SAFE_GLOBALS = (
    {("builtins", name) for name in ("dict", "list", "set", "frozenset", "tuple", "int", "str")}
    | {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)


class _DataUnpickler(pickle.Unpickler):
    """Admits built-in containers and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise MetaschedError(
                f"the pickle refers to {module}.{name}, which a data file never needs;"
                " refusing to load it"
            )
        return super().find_class(module, name)


def require_trust(path: Path, trust: bool) -> None:
    """Refuses a pickle file unless the user trusts it (the file is not opened).

    Raises:
        MetaschedError: ``trust`` is false.
    """
    if not trust:
        raise MetaschedError(
            f"{path} is a pickle, which can run code when read; if you trust it, set"
            " data.trust_pickles=true (only containers and numpy arrays are admitted even then)"
        )


def read_data_pickle(path: Path, trust: bool, what: str) -> Any:
    """The object in a data set's pickle file.

    Args:
        path: the file.
        trust: the user's explicit permission to open pickles.
        what: what the file should hold, for messages (e.g. "a split pickle").

    Raises:
        MetaschedError: not trusted, unreadable, truncated, or naming a class beyond containers
            and numpy arrays. The file is not opened at all without ``trust``.
    """
    require_trust(path, trust)
    try:
        with open(path, "rb") as handle:
            return _DataUnpickler(handle).load()
    except MetaschedError as error:
        raise MetaschedError(f"{path}: {error}") from error
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, AttributeError) as error:
        raise MetaschedError(
            f"{path}: not {what} ({type(error).__name__}: {error}); the file may be truncated,"
            " download it again"
        ) from error
