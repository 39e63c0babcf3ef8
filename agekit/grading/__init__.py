"""The steps of ``agekit grade`` (:mod:`agekit.grade`): which exercises a lesson has, running a notebook, checking it.

* ``grading.exercises``: the exercises of a lesson, nbgrader's metadata, which lesson a submission is;
* ``grading.run``: step 1, the notebook executed headless under a time limit;
* ``grading.checks``: step 2, the checking process that runs the package's checks.
"""
