"""What every exercise check shares (agekit/exercises/base.py): the public names and
signatures the notebooks call, and the loop over seeded trials with its success line."""

import inspect

import pytest
import torch

from agekit import exercises
from agekit.exercises.base import _over_trials

# Notebooks and student copies call these as check_xxx(their_function), some with trials=...
PUBLIC_CHECKS = {
    "check_age_weights": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_bottleneck_parameters": "(student: 'Callable') -> 'None'",
    "check_confidence_score": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_conv_output_size": "(student: 'Callable') -> 'None'",
    "check_cumulative_score": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_expected_age": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_joint_loss": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_knn_predict": "(student: 'Callable', trials: 'int' = 3) -> 'None'",
    "check_leaked_identities": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_mae": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_mean_std": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_paired_difference": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_parse_agedb": "(student: 'Callable') -> 'None'",
    "check_pca": "(student: 'Callable', trials: 'int' = 4) -> 'None'",
    "check_revised_contrastive_loss": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_reweighting": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_select_references": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_share_in_range": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
    "check_to_positions": "(student: 'Callable', trials: 'int' = 5) -> 'None'",
}


def test_public_checks_keep_their_names_and_signatures():
    assert sorted(exercises.__all__) == sorted(PUBLIC_CHECKS)
    for name, signature in PUBLIC_CHECKS.items():
        check = getattr(exercises, name)
        assert check.__name__ == name
        assert str(inspect.signature(check)) == signature, name
        assert check.__doc__.startswith("Exercise ("), name  # the docstring names the notebook


def test_grader_finds_the_imports_of_a_check():
    # agekit.grading.checks imports what a check's source imports, so that it is guarded too
    assert "from agekit.metrics import mae" in inspect.getsource(exercises.check_mae)
    assert "from sklearn.decomposition import PCA" in inspect.getsource(exercises.check_pca)


def _recording_check(seen, trials=5, seed=0):
    @_over_trials("Correct: all trials passed.", trials=trials, seed=seed)
    def check_double(student, trial, g):
        """Exercise (99): ``student(x) -> 2 * x``."""
        x = torch.rand(3, generator=g)
        seen.append((trial, x))
        if not torch.equal(student(x), 2 * x):
            raise AssertionError("not doubled")

    return check_double


def test_over_trials_runs_each_trial_with_its_own_seed_then_says_so(capsys):
    seen = []
    check = _recording_check(seen, trials=3, seed=100)
    assert str(inspect.signature(check)) == "(student: 'Callable', trials: 'int' = 3) -> 'None'"
    assert (check.__name__, check.__doc__) == ("check_double", "Exercise (99): ``student(x) -> 2 * x``.")
    check(lambda x: 2 * x)
    assert [trial for trial, _ in seen] == [0, 1, 2]
    for trial, x in seen:
        assert torch.equal(x, torch.rand(3, generator=torch.Generator().manual_seed(100 + trial)))
    assert capsys.readouterr().out == "Correct: all trials passed.\n"
    check(lambda x: 2 * x, 1)  # trials by position, as before
    assert len(seen) == 4


def test_over_trials_fails_without_the_success_line(capsys):
    check = _recording_check([])
    with pytest.raises(AssertionError, match="not doubled"):
        check(lambda x: x)
    with pytest.raises(AssertionError, match="returned None"):
        check(lambda x: None)
    with pytest.raises(AssertionError, match="expects your function itself"):
        check(2.0)
    assert capsys.readouterr().out == ""
