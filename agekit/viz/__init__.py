"""Plots the notebooks share. Every figure has axis labels and a title.

matplotlib is imported on first use, so the package itself does not need it.
Taught across the course; each function names its first notebook. The plots
live by subject; every name is importable from ``agekit.viz``:

* ``viz.base``: what every plot shares (``as_image``);
* ``viz.faces``: face grids, predictions on faces, age probabilities, feature maps;
* ``viz.ages``: age distributions, RAPL's age positions and margins, errors by age;
* ``viz.training``: training curves, comparisons of methods, confidence scores;
* ``viz.embeddings``: embeddings coloured by age or group, heatmaps;
* ``viz.diagrams``: schematics and parameter counts.
"""

from agekit.viz.ages import (
    plot_age_distribution,
    plot_age_positions,
    plot_error_by_age,
    plot_margin_clusters,
    plot_pred_vs_true,
    plot_reference_selection,
)
from agekit.viz.base import _axes, _plt, as_image  # noqa: F401  (_axes, _plt: for code that used them here)
from agekit.viz.diagrams import plot_parameter_counts, plot_schematic
from agekit.viz.embeddings import plot_age_embedding_3d, plot_embedding, plot_embedding_groups, plot_heatmap
from agekit.viz.faces import plot_age_probabilities, plot_feature_maps, plot_predictions, show_faces
from agekit.viz.training import (
    plot_comparison,
    plot_confidence_scores,
    plot_history,
    plot_learning_curves,
    plot_paired_differences,
    plot_rapl_history,
)

__all__ = [
    "as_image", "plot_age_distribution", "plot_age_embedding_3d", "plot_age_positions", "plot_age_probabilities",
    "plot_comparison", "plot_confidence_scores", "plot_embedding", "plot_embedding_groups", "plot_error_by_age",
    "plot_feature_maps", "plot_heatmap", "plot_history", "plot_learning_curves", "plot_margin_clusters",
    "plot_paired_differences", "plot_parameter_counts", "plot_predictions", "plot_pred_vs_true", "plot_rapl_history",
    "plot_reference_selection", "plot_schematic", "show_faces",
]
