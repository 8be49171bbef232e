"""Scores of enhancement models.

:mod:`.patches`: test patch pairs (DPED and PIRM protocols); :mod:`.compare`: several models, one table;
:mod:`.full`: whole test photos, strict and alignment-tolerant.
"""

from dpedkit.evaluate.compare import Comparison, compare
from dpedkit.evaluate.full import FullResult, evaluate_full
from dpedkit.evaluate.patches import EvalResult, Scores, evaluate, evaluate_arrays, load_test_pairs

__all__ = [
    "Comparison",
    "EvalResult",
    "FullResult",
    "Scores",
    "compare",
    "evaluate",
    "evaluate_arrays",
    "evaluate_full",
    "load_test_pairs",
]
