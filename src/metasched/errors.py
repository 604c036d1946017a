"""The exception types for what a user can cause or do (bad config, missing data, Ctrl-C)."""


class MetaschedError(Exception):
    """A user-fixable problem. The message names the culprit and the fix, on one line."""


class Diverged(MetaschedError):
    """A loss, gradient, reward or probability became NaN or infinite (or exploded).

    Args:
        what: the quantity and its value, e.g. "the meta-batch's query loss is nan".
        cause: the setting that most likely caused it and how to change it.
    """

    def __init__(self, what: str, cause: str) -> None:
        super().__init__(f"{what}; likely cause: {cause}")
        self.what, self.cause = what, cause


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C or SIGTERM, once the last checkpoint has been written."""

    def __init__(self, run_dir: object, iteration: int) -> None:
        super().__init__(
            f"interrupted at iteration {iteration}; checkpoint saved, continue with:"
            f" metasched train --resume {run_dir}"
        )


class TrainingAborted(Exception):
    """Raised when a second interrupt stops training at once, without saving.

    Args:
        run_dir: the run's directory.
        saved_iteration: the iteration of its newest checkpoint, None if it has none.
    """

    def __init__(self, run_dir: object, saved_iteration: int | None) -> None:
        if saved_iteration is None:
            message = f"aborted; {run_dir} holds no checkpoint yet, so the run must start again"
        else:
            message = (
                f"aborted; the checkpoint of iteration {saved_iteration} is intact, continue"
                f" with: metasched train --resume {run_dir}"
            )
        super().__init__(message)


class ComparisonInterrupted(Exception):
    """Raised when a comparison is stopped (Ctrl-C, SIGTERM, or one of its runs was)."""

    def __init__(self, out: object) -> None:
        super().__init__(
            f"interrupted; the unfinished runs in {out} keep their newest checkpoints: run the"
            " same metasched compare command again to continue them"
        )
