"""agekit: a course kit for face-based age estimation.

Two methods are taught and implemented here:

* RAPL, relative age position learning (Amirullaeva & Han, IEEE Access 2024);
* a Siamese metric-learning baseline (Jeong et al., Sensors 2018).

The notebooks in ``notebooks/`` import everything they need from this package.
"""

__version__ = "0.1.0"
