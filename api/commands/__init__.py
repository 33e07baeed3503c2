"""Sub-commands of the ``glueberry`` CLI (see :mod:`api.cli`)."""

__all__: list[str] = []
