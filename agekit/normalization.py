"""Input normalisation, a property of the weights a backbone starts from.

A network fine-tuned from pretrained weights must see its pixels scaled as in the
pipeline those weights were trained with. agekit knows two scalings:

=============  =====================================================  =========================================
name           formula on pixels x in [0, 1]                           weights that expect it
=============  =====================================================  =========================================
``symmetric``  (x - 0.5) / 0.5, so pixels lie in [-1, 1]               face.evoLVe / InsightFace IR-50 (``body.N``
                                                                       keys), torchvision's Inception V3 (see
                                                                       below), and weights trained from scratch
``imagenet``   (x - mean) / std, ImageNet's mean (0.485, 0.456, 0.406)  the RAPL authors' checkpoints and
               and std (0.229, 0.224, 0.225) per RGB channel           pipeline, POSTER++'s IR-50 (``body1/2/3``
                                                                       keys)
=============  =====================================================  =========================================

torchvision's Inception V3 weights were ported from TensorFlow, where they were
trained on [-1, 1] pixels. torchvision's pipeline normalises with ImageNet's
statistics and then undoes that inside the network (``transform_input=True``), so
the first convolution sees (x - 0.5) / 0.5; agekit feeds that scaling directly.

The setting ``model.normalization`` is ``auto`` by default: the scaling of the
weights in ``model.pretrained`` (``symmetric`` without weights, as before). Every
checkpoint stores the scaling its model was trained with, and training,
evaluation, ``agekit predict`` and the converter of the RAPL authors' files all
apply it through :func:`normalize_as`. Checkpoints written before it was recorded
load as ``symmetric``, the only scaling agekit used then.

Taught in ``notebooks/10_real_datasets.ipynb``.
"""

from __future__ import annotations

# name -> (mean, std), per RGB channel
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

DEFAULT = "symmetric"
"""The scaling of fresh weights, and of checkpoints that do not record one."""

# the weights' source (as the loaders name it) -> the scaling its pipeline used
SOURCE_NORMALIZATION: dict[str, str] = {
    "face.evoLVe": "symmetric",
    "POSTER++": "imagenet",
    "RAPL authors": "imagenet",
    "torchvision": "symmetric",
}


def check_normalization(name: str) -> str:
    """``name`` if it is a known scaling; else a ValueError listing them."""
    if name not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {list(NORMALIZATIONS)}, got {name!r}.")
    return name


def normalize_as(images, name: str = DEFAULT):
    """[0, 1] images [b, 3, H, W] -> the model's input under scaling ``name`` (same device and dtype)."""
    mean, std = NORMALIZATIONS[check_normalization(name)]
    if name == "symmetric":
        return (images - 0.5) / 0.5  # the same float operations as agekit always used
    return (images - images.new_tensor(mean).view(1, 3, 1, 1)) / images.new_tensor(std).view(1, 3, 1, 1)
