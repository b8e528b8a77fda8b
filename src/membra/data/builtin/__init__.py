"""Built-in offline datasets: ``digits``, ``digits-dvs``, ``mnist1d``, ``mnist1d-static``,
``mnist-5k`` (registered on import)."""

from . import digits, digits_dvs, mnist1d, mnist5k  # noqa: F401
