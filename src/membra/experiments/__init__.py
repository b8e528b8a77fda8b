"""Runners that compose membra's packages into a study or a report (DESIGN.md: above
``train`` and ``control``, below ``cli``).

- :mod:`membra.experiments.qcfs_pascal`: the QCFS -> PASCAL conversion recipe
  (``membra convert train|run|report``).
"""
