"""Built-in offline datasets: ``digits``, ``digits-dvs``, ``mnist1d`` (registered on import)."""

from . import digits, digits_dvs, mnist1d  # noqa: F401
