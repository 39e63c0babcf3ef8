"""Automatic checks for the notebooks' exercises.

Each ``check_*`` function calls the student's implementation on random inputs,
compares it with the package's own, prints a short success line, and otherwise
raises an ``AssertionError`` that says what differed and gives a hint. The
package's version is the reference because the tests already compare it with
slow loops and worked examples.

Used by every notebook's *Exercises* section. The checks live by subject, and
every one is importable from ``agekit.exercises``: ``exercises.metrics``
(measuring), ``exercises.methods`` (RAPL and the Siamese baseline),
``exercises.data`` (splits and data set formats), ``exercises.models`` (what a
network computes); ``exercises.base`` holds what they share.
"""

from agekit.exercises.base import (  # noqa: F401  (shared by the checks)
    _close,
    _exercise,
    _generator,
    _matches_agekit,
    _over_trials,
)
from agekit.exercises.data import (  # noqa: F401  (the AgeDB cases: for the tests)
    _AGEDB_CASES,
    _AGEDB_MALFORMED,
    check_leaked_identities,
    check_parse_agedb,
)
from agekit.exercises.methods import (
    check_age_weights,
    check_expected_age,
    check_joint_loss,
    check_knn_predict,
    check_revised_contrastive_loss,
    check_reweighting,
    check_select_references,
    check_to_positions,
)
from agekit.exercises.metrics import (  # noqa: F401  (_seed_scores: for the tests)
    _pair_of_floats,
    _seed_scores,
    check_confidence_score,
    check_cumulative_score,
    check_mae,
    check_mean_std,
    check_paired_difference,
    check_share_in_range,
)
from agekit.exercises.models import check_bottleneck_parameters, check_conv_output_size, check_pca

__all__ = [
    "check_age_weights", "check_bottleneck_parameters", "check_confidence_score", "check_conv_output_size",
    "check_cumulative_score", "check_expected_age", "check_joint_loss", "check_knn_predict", "check_leaked_identities",
    "check_mae", "check_mean_std", "check_paired_difference", "check_parse_agedb", "check_pca",
    "check_revised_contrastive_loss", "check_reweighting", "check_select_references", "check_share_in_range",
    "check_to_positions",
]
