"""Every table, so `Base.metadata` is complete (for Alembic and test databases).

Above the domain packages: bot.db (the base every model imports) must not import them back.
"""

from __future__ import annotations

import bot.areas.models  # noqa: F401
import bot.broadcasts.models  # noqa: F401
import bot.cases.models  # noqa: F401
import bot.core_models  # noqa: F401
import bot.outbox.models  # noqa: F401
import bot.people.models  # noqa: F401
from bot.db import Base  # noqa: F401  (its metadata now knows every table)


def import_all_models() -> None:
    """Nothing left to do: importing this module imported every model (a call says why the
    import is there)."""
