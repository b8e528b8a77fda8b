"""Runners that compose membra into a study or a report: the IMP study on
:func:`membra.train.fit` (:mod:`.study`) and its tables and figures (:mod:`.imp_tables`)."""

from .imp_tables import aggregate, imp_report, load_runs
from .study import ARMS, StudyMeasures, arm_of, run_arm, study_config

__all__ = ["ARMS", "arm_of", "study_config", "run_arm", "StudyMeasures", "imp_report",
           "load_runs", "aggregate"]
