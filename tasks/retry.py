"""When a task may retry: only after a failure a retry can fix (I/O), never after a bug or bad data."""

from __future__ import annotations

from collections.abc import Callable


def retry_on(*transient: type[BaseException], never: tuple[type[BaseException], ...] = ()) -> Callable[..., bool]:
    """A Prefect ``retry_condition_fn`` that retries on ``transient`` errors unless they are ``never`` errors."""

    def condition(task, task_run, state) -> bool:
        try:
            state.result()
        except never:
            return False
        except transient:
            return True
        except Exception:  # the task's own failure, inspected only to decide: anything else is a bug
            return False
        return False

    return condition
