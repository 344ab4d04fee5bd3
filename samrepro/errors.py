"""The one exception type for mistakes a user can fix (bad flags, missing files, ...).

The CLI prints its message on one line and exits non-zero, without a traceback.
Every message says what is wrong and what to do about it.
"""


class UserError(Exception):
    """A problem in the user's input or environment, with the fix in its message."""

    def _render_traceback_(self) -> list[str]:
        """IPython (a notebook, papermill) shows this one line instead of a traceback."""
        return [f"UserError: {self}"]


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """Return `sparsity` as a float, or raise if it is outside [0, 1)."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= value < 1.0:
        raise UserError(f"{what} must be in [0, 1) (e.g. 0.5 for 50%), got {value}")
    return value
