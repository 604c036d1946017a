"""The one exception type for mistakes a user can make (bad config, missing data, ...)."""


class MetaschedError(Exception):
    """A user-fixable problem. The message names the culprit and the fix, on one line."""


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C, once the last checkpoint has been written."""

    def __init__(self, run_dir: object, iteration: int) -> None:
        super().__init__(
            f"interrupted at iteration {iteration}; checkpoint saved, continue with:"
            f" metasched train --resume {run_dir}"
        )
