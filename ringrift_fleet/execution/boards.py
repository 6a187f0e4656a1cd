"""Board configurations a job may name, and their check.

Apart from the reference game so that validating a job (which every
coordinator does before it sends one) does not load numpy with the game.
"""

from __future__ import annotations

from typing import Any

from ringrift_fleet.errors import ValidationError

BOARD_TYPES: tuple[str, ...] = ("square8", "square19", "hex8", "hexagonal")
PLAYER_COUNTS: tuple[int, ...] = (2, 3, 4)


def config_key(board_type: str, num_players: int) -> str:
    """The board configuration's name used in paths and queues, e.g. ``hex8_2p``."""
    return f"{board_type}_{num_players}p"


def check_board(board_type: Any, num_players: Any, ctx: str = "") -> tuple[str, int]:
    """Validate a board type and player count; the error names the field."""
    pre = f"{ctx}." if ctx else ""
    if board_type not in BOARD_TYPES:
        raise ValidationError(
            f"{pre}board_type: {board_type!r} is not one of {', '.join(BOARD_TYPES)}"
        )
    if isinstance(num_players, bool) or num_players not in PLAYER_COUNTS:
        raise ValidationError(f"{pre}num_players: {num_players!r} is not one of 2, 3, 4")
    return str(board_type), int(num_players)
