"""Built-in offline datasets: ``digits``, ``digits-dvs``, ``mnist1d`` (registered on import)."""

from . import digits  # noqa: F401
