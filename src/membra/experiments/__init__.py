"""Runners that compose membra's packages into a study or a report (DESIGN.md: above
``train`` and ``control``, below ``cli``).

- :mod:`membra.experiments.qcfs_pascal`: the QCFS -> PASCAL conversion recipe
  (``membra convert train|run|report``).
- :mod:`membra.experiments.study`: the IMP study on :func:`membra.train.fit`, and
  :mod:`membra.experiments.imp_tables`: its tables and figures.
"""

from .imp_tables import aggregate, imp_report, load_runs
from .study import ARMS, StudyMeasures, arm_of, run_arm, study_config

__all__ = ["ARMS", "arm_of", "study_config", "run_arm", "StudyMeasures", "imp_report",
           "load_runs", "aggregate"]
