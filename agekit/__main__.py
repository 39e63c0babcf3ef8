"""``python -m agekit`` runs the command line (also under ``torchrun -m agekit``)."""

import sys

from agekit.cli import main

sys.exit(main())
