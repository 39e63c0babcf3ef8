"""Load face-recognition IR-50 weights into the three-stage IR50 backbone.

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

Taught in ``notebooks/03_backbone_ir50.ipynb``.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field

import torch
from torch import nn

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
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"Refusing {path}: it stores pickled Python objects, not only tensors, and loading it "
                "would run code from the file (torch.load(weights_only=True) failed). If you trust its "
                "source, re-save just the weights with torch.save(model.state_dict(), 'ir50.pth') "
                f"where the file was made. Detail: {str(error).splitlines()[0]}"
            ) from None
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


def _whole_model_hint(state: dict) -> str:
    """A pointer to the right tool when ``state`` is a whole model rather than a backbone."""
    if "fc_age.weight" in state and any(key.startswith("backbone.body1.") for key in state):
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
    prefix = "module." if any(key.startswith("module.") for key in state) else None
    if prefix:
        state = {key.removeprefix(prefix): value for key, value in state.items()}

    single = any(_SINGLE_KEY.fullmatch(key) for key in state)
    split = any(_SPLIT_KEY.fullmatch(key) for key in state)
    if single == split:
        what = "both body.N and body1/2/3 keys" if single else "no body.N or body1/2/3 keys"
        raise ValueError(
            f"{os.fspath(path)} does not look like an IR-50 checkpoint: it has {what}."
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
            f"The weights in {os.fspath(path)} ({layout} layout) do not fit this "
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
