"""metasched: meta-learning with an adaptive task scheduler."""

from metasched.errors import MetaschedError

__all__ = ["MetaschedError"]
__version__ = "0.1.0"
