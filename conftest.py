"""Test-session settings shared by the unit tests and the notebook tests.

Notebooks are tested in their fast mode (``AGEKIT_FAST=1``) unless the caller
sets ``AGEKIT_FAST`` already (``AGEKIT_FAST=0`` runs them in full mode).
"""

import os

os.environ.setdefault("AGEKIT_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
