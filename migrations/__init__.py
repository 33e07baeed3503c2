"""Alembic migrations of the Glueberry database, runnable from any working directory.

:func:`upgrade` (sync, for the CLI) and :func:`upgrade_async` (for the server's startup,
inside the running event loop) bring a database to the newest revision. The Alembic
configuration is built in code (:func:`alembic_config`), so no ``alembic.ini`` has to be
found in the current directory; ``migrations/alembic.ini`` exists for developers running
the ``alembic`` command (``alembic -c migrations/alembic.ini revision --autogenerate``).
"""

from migrations.runner import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
    upgrade_async,
)

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade", "upgrade_async"]
