"""Counts transactions begun on an engine (a fast search begins none)."""

from __future__ import annotations

import sqlalchemy as sa


class Begins:
    """Counts transactions begun on the table's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self._engine = engine
        sa.event.listen(engine, "begin", self._on_begin)

    def _on_begin(self, conn) -> None:
        self.count += 1

    def close(self) -> None:
        sa.event.remove(self._engine, "begin", self._on_begin)
