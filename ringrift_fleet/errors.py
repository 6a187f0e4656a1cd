"""User-facing errors: the CLI prints these as one message, never a traceback."""

from __future__ import annotations


class FleetError(Exception):
    """A problem the user can fix; the message names the input at fault."""


class ConfigError(FleetError, ValueError):
    """A bad configuration value; the message names the variable and what it accepts."""


class ValidationError(FleetError, ValueError):
    """Malformed data (JSON, task arguments); the message names the field."""


class InventoryError(FleetError, ValueError):
    """A bad inventory; the message lists every problem as file:line: host: field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
