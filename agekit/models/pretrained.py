"""Load pretrained weights: face-recognition IR-50 backbones, any backbone by its loader, the RAPL authors' models.

RAPL starts from an IR-50 trained for face recognition (Sec. III-A). Such
checkpoints come in two key layouts:

* ``face.evoLVe``: one flat body, ``input_layer.*``, ``body.0.*`` ... ``body.23.*``
  and ``output_layer.*``, as in InsightFace_Pytorch, face.evoLVe and the
  MS-Celeb-1M ``ir50.pth`` shipped with POSTER; sometimes wrapped under a
  ``"state_dict"`` key and/or with a ``module.`` prefix (saved from DataParallel);
* ``POSTER++``: the body split by stage, ``body1.0-2``, ``body2.0-3``,
  ``body3.0-13``, each numbered from 0.

Our IR50 keeps stages 1-3 only, so ``body.21-23`` (stage 4, 512 channels), any
``body4.*`` and the ``output_layer.*`` are dropped and listed in the report. Every
other tensor must land on a backbone tensor of the same shape, and every backbone
tensor must be filled, or loading stops with an error that lists what is
missing, unexpected or of the wrong shape. (The only exception: BatchNorm's
``num_batches_tracked`` counters, which older checkpoints lack and which do not
change the network's output; they are listed in ``kept_from_model``.)

Files are read with ``torch.load(weights_only=True)`` (or ``safetensors`` for a
``.safetensors`` file, when that package is installed): a file that needs
pickled Python code to load is refused.

Two more entry points:

* :func:`load_pretrained` loads a file through the loader of the model's backbone
  (IR-50 files into IR backbones, torchvision's Inception V3 files into Inception
  V3) and says which input scaling the weights' source used
  (:mod:`agekit.normalization`); the trainer calls it for ``model.pretrained``;
* :func:`from_rapl_authors` turns a whole model released by the RAPL authors
  (``backbone.body1...``, ``fc_age``, ``fc_gender``, ``fc_feature``, ``fc_pos``,
  ``parameter``) into a RAPLNet; ``agekit convert rapl-authors`` writes it as a
  checkpoint.

Taught in ``notebooks/03_backbone_ir50.ipynb``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from agekit._io import load_torch
from agekit.models.ir import IR

_SPLIT_KEY = re.compile(r"body(\d+)\.(\d+)\.(.+)")
_SINGLE_KEY = re.compile(r"body\.(\d+)\.(.+)")
_SHOWN = 12  # keys listed per kind in an error message


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_ir50_weights` did.

    layout: "face.evoLVe" (``body.N``) or "POSTER++" (``body1/2/3``);
    loaded: number of tensors copied into the backbone;
    dropped: keys of the file that were left out on purpose (stage 4, output layer);
    wrapper: "state_dict" when the tensors sat under that key, else None;
    stripped_prefix: "module." when it was removed from the keys, else None;
    kept_from_model: ``num_batches_tracked`` counters the file lacks (left as they were).
    """

    layout: str
    loaded: int
    dropped: list[str] = field(default_factory=list)
    wrapper: str | None = None
    stripped_prefix: str | None = None
    kept_from_model: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        stages = sorted({_stage_name(key) for key in self.dropped})
        text = f"{self.layout} layout: loaded {self.loaded} tensors, dropped {len(self.dropped)} ({', '.join(stages)})"
        if self.kept_from_model:
            text += f"; {len(self.kept_from_model)} num_batches_tracked counters not in the file"
        return text + "."


def _stage_name(key: str) -> str:
    return "output layer" if key.startswith("output_layer") else "stage 4"


def read_state_dict(path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read tensors from ``path`` without running pickled code; return (state dict, wrapper key).

    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No weights file at {path!r}; check the path.")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(
                f"{path} is a .safetensors file, but the safetensors package is not installed: "
                "`pip install safetensors`, or convert the file with torch.save(state_dict, 'ir50.pth')."
            ) from None
        state = load_file(path, device="cpu")
    else:
        state = load_torch(path, advice="If you trust its source, re-save just the weights with "
                           "torch.save(model.state_dict(), 'ir50.pth') where the file was made.")
    wrapper = None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state, wrapper = state["state_dict"], "state_dict"
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of named tensors.")
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: entries {not_tensors[:_SHOWN]} are not tensors; expected a state dict.")
    return dict(state), wrapper


def _backbone(model: nn.Module) -> IR:
    if isinstance(model, IR):
        return model
    if isinstance(getattr(model, "backbone", None), IR):
        return model.backbone
    raise TypeError(
        f"model must be an IR backbone (e.g. IR50()) or a model whose .backbone is one, "
        f"got {type(model).__name__}."
    )


def _rename(key: str, layout: str, backbone: IR) -> str | None:
    """The backbone key for a file key; None to drop it; the key unchanged when it matches nothing."""
    if key.startswith("output_layer."):
        return None
    total = sum(backbone.units)
    if layout == "POSTER++":
        match = _SPLIT_KEY.fullmatch(key)
        if match is None:
            return key
        stage, unit, rest = int(match[1]) - 1, int(match[2]), match[3]
        if stage >= len(backbone.units):
            return None
        if not 0 <= stage or unit >= backbone.units[stage]:
            return key  # a unit our backbone does not have: reported as unexpected
        return f"body.{sum(backbone.units[:stage]) + unit}.{rest}"
    match = _SINGLE_KEY.fullmatch(key)
    if match is not None and int(match[1]) >= total:
        return None
    return key


def _is_rapl_authors(state: dict) -> bool:
    """True for a whole model in the RAPL authors' layout (``backbone.body1...``, ``fc_age``, ...)."""
    return "fc_age.weight" in state and any(key.startswith("backbone.body1.") for key in state)


def _whole_model_hint(state: dict) -> str:
    """A pointer to the right tool when ``state`` is a whole model rather than a backbone."""
    if _is_rapl_authors(state):
        return (" It is a whole RAPL model in the RAPL authors' layout (backbone.body1..., fc_age, fc_pos, ...): "
                "convert it with `agekit convert rapl-authors FILE OUT --ages ...` "
                "(agekit.models.pretrained.from_rapl_authors) instead.")
    if any(key.startswith("backbone.") for key in state):
        return (" Its keys sit under 'backbone.': it holds a whole model; save only the backbone's "
                "state dict (model.backbone.state_dict()), or load an agekit checkpoint with load_trained.")
    return ""


def _listing(title: str, items: list[str]) -> str:
    more = f" ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"\n  {title} ({len(items)}): {items[:_SHOWN]}{more}"


def load_ir50_weights(model: nn.Module, path) -> LoadReport:
    """Copy IR-50 face-recognition weights from ``path`` into ``model``'s IR backbone.

    model: an :class:`~agekit.models.ir.IR50` (or any IR of the same family), or a
    model whose ``.backbone`` is one (e.g. a RAPLNet). Returns a :class:`LoadReport`;
    raises ``ValueError`` listing missing, unexpected and mis-shaped keys when the
    file does not fit, before anything is copied.
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """
    backbone = _backbone(model)
    state, wrapper = read_state_dict(path)
    state, prefix = _strip_module_prefix(state)
    return _load_ir_state(backbone, state, os.fspath(path), wrapper, prefix)


def _strip_module_prefix(state: dict) -> tuple[dict, str | None]:
    """Remove the ``module.`` prefix of a model saved from (Distributed)DataParallel."""
    if not any(key.startswith("module.") for key in state):
        return state, None
    return {key.removeprefix("module."): value for key, value in state.items()}, "module."


def _load_ir_state(backbone: IR, state: dict, path: str, wrapper: str | None = None,
                   prefix: str | None = None) -> LoadReport:
    """Copy the IR-50 tensors of ``state`` (either key layout) into ``backbone``; ``path`` names it in messages."""
    single = any(_SINGLE_KEY.fullmatch(key) for key in state)
    split = any(_SPLIT_KEY.fullmatch(key) for key in state)
    if single == split:
        what = "both body.N and body1/2/3 keys" if single else "no body.N or body1/2/3 keys"
        raise ValueError(
            f"{path} does not look like an IR-50 checkpoint: it has {what}."
            + _whole_model_hint(state)
            + _listing("its keys", list(state))
        )
    layout = "POSTER++" if split else "face.evoLVe"

    target = backbone.state_dict()
    mapped, dropped, unexpected, mismatched, misshaped = {}, [], [], [], set()
    for key, tensor in state.items():
        new_key = _rename(key, layout, backbone)
        if new_key is None:
            dropped.append(key)
        elif new_key not in target:
            unexpected.append(key)
        elif tuple(tensor.shape) != tuple(target[new_key].shape):
            mismatched.append(f"{key}: file {tuple(tensor.shape)} vs model {tuple(target[new_key].shape)}")
            misshaped.add(new_key)
        else:
            mapped[new_key] = tensor
    # a tensor of the wrong shape is listed once, under "shapes that disagree", not also as missing
    unfilled = [key for key in target if key not in mapped and key not in misshaped]
    kept = [key for key in unfilled if key.endswith("num_batches_tracked")]
    missing = [key for key in unfilled if not key.endswith("num_batches_tracked")]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"The weights in {path} ({layout} layout) do not fit this "
            f"{type(backbone).__name__}{backbone.units}; nothing was loaded."
            + (_listing("backbone tensors missing from the file", missing) if missing else "")
            + (_listing("file tensors with no place in the backbone", unexpected) if unexpected else "")
            + (_listing("shapes that disagree", mismatched) if mismatched else "")
        )
    backbone.load_state_dict(mapped, strict=False)
    return LoadReport(
        layout=layout,
        loaded=len(mapped),
        dropped=dropped,
        wrapper=wrapper,
        stripped_prefix=prefix,
        kept_from_model=kept,
    )


# ----------------------------------------------------------------------------- any backbone

_EXPECTED_LAYOUT = {
    "IR": ("an IR-50 state dict in the face.evoLVe layout (input_layer.*, body.0.* ... body.23.*) or the "
           "POSTER++ layout (input_layer.*, body1.*, body2.*, body3.*)"),
    "InceptionV3": ("torchvision's inception_v3 state dict (Conv2d_1a_3x3.conv.weight, Mixed_5b.*, ... Mixed_7c.*; "
                    "fc.* and AuxLogits.* are dropped)"),
}


@dataclass(frozen=True)
class PretrainedWeights:
    """What :func:`load_pretrained` loaded: the weights' source, its input scaling, and a report line.

    source: "face.evoLVe" or "POSTER++" (IR-50 key layouts), "RAPL authors" (the backbone of
    their whole model) or "torchvision" (Inception V3);
    normalization: the scaling that source's pipeline used (:mod:`agekit.normalization`).
    """

    source: str
    normalization: str
    description: str


def load_pretrained(model: nn.Module, path) -> PretrainedWeights:
    """Load ``path`` into ``model``'s backbone with the loader of that backbone.

    model: an IR / InceptionV3 backbone, or a model whose ``.backbone`` is one (RAPLNet,
    SiameseNet). IR backbones read IR-50 files (:func:`load_ir50_weights`) and the
    backbone of a whole RAPL authors' model (to fine-tune from it; its heads, tied to
    its age labels, are not used), Inception V3 reads torchvision's files
    (:func:`agekit.models.inception.load_inception_v3_weights`); all accept
    ``.pth``/``.pt`` state dicts and ``.safetensors``. A file that does not fit raises
    ``ValueError`` naming the layout the backbone expected.
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """
    from agekit.models.inception import InceptionV3, load_inception_v3_weights
    from agekit.normalization import SOURCE_NORMALIZATION

    backbone = model if isinstance(model, (IR, InceptionV3)) else getattr(model, "backbone", None)
    kind = "IR" if isinstance(backbone, IR) else "InceptionV3" if isinstance(backbone, InceptionV3) else None
    if kind is None:
        raise TypeError(f"Pretrained weights load into an IR or Inception V3 backbone; "
                        f"{type(model).__name__} has none (backbone: {type(backbone).__name__}).")
    try:
        if kind == "IR":
            state, wrapper = read_state_dict(path)
            state, prefix = _strip_module_prefix(state)
            authors = _is_rapl_authors(state)
            if authors:  # fine-tuning from their trained model: its backbone, fresh heads
                state = {key.removeprefix("backbone."): value for key, value in state.items()
                         if key.startswith("backbone.")}
            report = _load_ir_state(backbone, state, os.fspath(path), wrapper, prefix)
            source = "RAPL authors" if authors else report.layout
            description = f"the backbone of a RAPL authors' model ({report})" if authors else str(report)
        else:
            dropped = load_inception_v3_weights(backbone, path)
            source = "torchvision"
            description = f"torchvision Inception V3 layout: loaded the backbone, dropped {len(dropped)} head tensors."
    except ValueError as error:
        raise ValueError(
            f"The weights file {os.fspath(path)} does not fit the {type(backbone).__name__} backbone, which loads "
            f"{_EXPECTED_LAYOUT[kind]}, as .pth/.pt or .safetensors.{_other_backbone_hint(path, kind)} Detail: {error}"
        ) from None
    return PretrainedWeights(source, SOURCE_NORMALIZATION[source], f"{os.fspath(path)}: {description}")


def _other_backbone_hint(path, kind: str) -> str:
    """A pointer to model.backbone when the file holds the other family's weights."""
    try:
        keys = set(read_state_dict(path)[0])
    except ValueError:
        return ""
    keys = {key.removeprefix("module.") for key in keys}
    if kind == "IR" and "Conv2d_1a_3x3.conv.weight" in keys:
        return " It holds Inception V3 weights: set model.backbone=inception_v3 to use them."
    if kind == "InceptionV3" and any(_SINGLE_KEY.fullmatch(k) or _SPLIT_KEY.fullmatch(k) for k in keys):
        return " It holds IR-50 weights: set model.backbone=ir50 to use them."
    return ""


# ----------------------------------------------------------------------------- the RAPL authors' models

# Their head names -> agekit's (IR50_EVR_AgeRM_GP / IR50_EVR_AgeRM in the authors' model/networks.py)
_RAPL_AUTHORS_HEADS = {
    "fc_age": "age_head.fc",  # Linear(256, n): EVR logits (eq. 1)
    "fc_gender": "gender_head.fc",  # Linear(256, 2): GP (eq. 3); absent in their CACD model
    "fc_feature": "position_head.age_fc",  # Linear(n, 1) over the reweighted features
    "fc_pos": "position_head.position_fc",  # Linear(256, n): position logits (eq. 7)
}
RAPL_AUTHORS_IMAGE_SIZE = 112
"""Their backbone resizes every input to 112 px; agekit feeds 112 px faces instead."""


def from_rapl_authors(path_or_state_dict, age_values):
    """A :class:`~agekit.models.RAPLNet` holding a model released by the RAPL authors.

    path_or_state_dict: their checkpoint (``torch.save(model.state_dict())`` of
    ``IR50_EVR_AgeRM_GP`` or ``IR50_EVR_AgeRM``; ``.pt``/``.pth`` or ``.safetensors``,
    read without running pickled code) or that state dict. Keys: ``backbone.input_layer.*``,
    ``backbone.body1/2/3.*`` (the POSTER++ IR-50), ``backbone.output_layer.*`` (unused by
    their forward pass, dropped), ``fc_age``, ``fc_gender`` (optional), ``fc_feature``,
    ``fc_pos`` and ``parameter`` (p of eq. 4).
    age_values: the n age labels, increasing, in the order of ``fc_age``'s outputs (their
    files do not store them: the sorted distinct ages of the data set's CSV list in their
    ``datalists/``). A count that differs from the file's heads is an error.

    Returns the model in eval mode: variant EVR+RAPL+GP (EVR+RAPL without ``fc_gender``),
    IR50 backbone. It expects 112 px faces scaled with ImageNet's mean and std
    (``agekit.normalization.normalize_as(x, "imagenet")``), as the authors' pipeline feeds
    them; ``agekit convert rapl-authors`` writes a checkpoint that records this.
    Taught in ``notebooks/10_real_datasets.ipynb``.
    """
    from agekit.models.rapl import RAPLNet
    from agekit.data.labels import label_values

    if isinstance(path_or_state_dict, dict):
        name, state = "the state dict", dict(path_or_state_dict)
        not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
        if not_tensors:
            raise ValueError(f"The state dict's entries {not_tensors[:_SHOWN]} are not tensors.")
    else:
        name, (state, _) = os.fspath(path_or_state_dict), read_state_dict(path_or_state_dict)
    state, _ = _strip_module_prefix(state)
    expected = ("backbone.input_layer.*, backbone.body1/2/3.*, fc_age, fc_feature, fc_pos, parameter "
                "and optionally fc_gender")
    needed = ["fc_age.weight", "fc_age.bias", "fc_feature.weight", "fc_feature.bias", "fc_pos.weight",
              "fc_pos.bias", "parameter"]
    absent = [key for key in needed if key not in state]
    if absent or not _is_rapl_authors(state):
        raise ValueError(
            f"{name} is not a RAPL authors' checkpoint: it lacks {absent or ['backbone.body1.*']}. Their layout is "
            f"{expected}. (An IR-50 backbone file alone loads with model.pretrained / load_ir50_weights.)"
            + _listing("its keys", list(state))
        )
    count = state["fc_age.weight"].shape[0]
    values = label_values(age_values)
    if values.numel() != count:
        raise ValueError(
            f"{name} has {count} age outputs (fc_age: {tuple(state['fc_age.weight'].shape)}), but {values.numel()} "
            f"age labels were given; give the {count} distinct ages of the data set the model was trained on, "
            "in increasing order."
        )
    gender = "fc_gender.weight" in state
    model = RAPLNet(values, backbone="ir50", head="evr", gender=gender, rapl=True)

    backbone_state = {key.removeprefix("backbone."): value for key, value in state.items()
                      if key.startswith("backbone.")}
    heads = {"reweighting.p": state["parameter"]}
    for theirs, ours in _RAPL_AUTHORS_HEADS.items():
        for part in ("weight", "bias"):
            if f"{theirs}.{part}" in state:
                heads[f"{ours}.{part}"] = state[f"{theirs}.{part}"]
    known = set(needed) | {"fc_gender.weight", "fc_gender.bias"}
    unexpected = [key for key in state if not key.startswith("backbone.") and key not in known]
    target = model.state_dict()
    mismatched = [f"{key}: file {tuple(v.shape)} vs model {tuple(target[key].shape)}"
                  for key, v in heads.items() if tuple(v.shape) != tuple(target[key].shape)]
    if unexpected or mismatched:
        raise ValueError(
            f"{name} does not fit the RAPL authors' model ({expected}); nothing was loaded."
            + (_listing("keys their model does not have", unexpected) if unexpected else "")
            + (_listing("shapes that disagree", mismatched) if mismatched else "")
        )
    _load_ir_state(model.backbone, backbone_state, name)
    with torch.no_grad():
        for key, value in heads.items():
            target[key].copy_(value)
    return model.eval()
