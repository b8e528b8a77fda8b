"""Moved to :mod:`membra.experiments.calibrate_study` (it trains through ``membra.train``,
which ``membra.convert`` never imports); this name stays for old imports and resolves lazily."""

def __getattr__(name):
    from ..experiments import calibrate_study

    return getattr(calibrate_study, name)
