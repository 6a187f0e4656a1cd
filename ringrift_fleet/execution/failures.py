"""How a task tells whoever reads its result that its input was wrong.

A job that fails on bad input fails its Celery task with :class:`TaskInputError`:
state ``FAILURE``, and a message that names the field
(``ringrift.evaluation.candidate: model 'models/hex8_2p/v0009.json' is not on
this host``).  The class is importable wherever the fleet's Celery app is (this
module is imported with it), so a client rebuilds the same exception from the
result backend instead of a generic one.

It is also a :class:`click.ClickException`.  ``celery -A ringrift_fleet result
<id>`` is a click program that re-raises a failed task's exception; click shows
this one as a single ``Error: <message>`` line (exit status 1) instead of the
~50-line traceback of Celery's own client code.  Flower and
``AsyncResult.result`` see an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations

from click import ClickException

from ringrift_fleet.errors import ValidationError


class TaskInputError(ValidationError, ClickException):
    """A job's arguments or the artifacts they name are wrong; the message names the field."""

    def __init__(self, message: str) -> None:
        ClickException.__init__(self, message)

    def __reduce__(self) -> tuple[type[TaskInputError], tuple[str]]:
        return (type(self), (self.message,))


def as_task_input_error(exc: ValidationError) -> TaskInputError:
    """``exc`` as a TaskInputError (the same one when it already is)."""
    return exc if isinstance(exc, TaskInputError) else TaskInputError(str(exc))
