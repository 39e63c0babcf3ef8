"""The two methods as plug-ins of one training loop.

The trainer (:mod:`agekit.training.trainer`) owns everything the methods share:
batches, augmentation, the optimiser, mixed precision, checkpoints, evaluation
and distributed training. A method brings only what is its own:

=====================  =============================================  ==========================================
hook                   RAPL (Amirullaeva & Han, 2024)                 Siamese (Jeong et al., 2018)
=====================  =============================================  ==========================================
``build_model``        ``RAPLNet.from_variant`` (Table 3 row)         ``SiameseNet`` (age + gender embeddings)
``forward``            model(images, references)                      model(images)
``loss``               eq. 8: age L1 + gender CE + position CE        revised contrastive loss, age + gender
``after_batch``        feed the reference bank (features, ages)       -
``prepare_evaluation`` evaluate with this epoch's references          embed the training set as the kNN gallery
``end_epoch``          select the next epoch's references (Alg. 1)    -
``outputs``            EVR age, gender, position age, features        embeddings, features
``finish``             -                                              kNN age (M nearest, L1), kNN gender
``describe``           "EVR+RAPL+GP, ir_small"                        "multi-task, ir_small"
=====================  =============================================  ==========================================

Both ``loss`` hooks return the one contract of :mod:`agekit.losses`: (total, parts),
parts holding detached scalars, "total" and each term that counts. The functions
:func:`rapl_outputs` and :func:`siamese_outputs` are also what
:func:`agekit.training.inference.predict` uses on a trained model
(:func:`bare_model_predictor` picks them for a bare model).

Taught in ``notebooks/06_rapl_training.ipynb`` and ``notebooks/07_siamese_metric_learning.ipynb``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from agekit.config import KNN_K, Config
from agekit.data.labels import AgeLabels
from agekit.knn import Gallery, knn_gender_predict
from agekit.losses import rapl_loss, siamese_loss
from agekit.references import ReferenceBank


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def adapt_to_data(config: Config, has_gender: bool) -> tuple[Config, list[str]]:
    """Switch off the gender task when the data set has no gender labels; say what changed.

    Returns (possibly changed copy of ``config``, notes for the user).
    """
    notes = []
    if has_gender:
        return config, notes
    config = copy.deepcopy(config)
    if config.method == "rapl" and config.rapl.variant.endswith("+GP"):
        old = config.rapl.variant
        config.rapl.variant = old.removesuffix("+GP")
        notes.append(f"The data set has no gender labels, so the gender head is off: variant {old} -> {config.rapl.variant}.")
    if config.method == "siamese" and config.siamese.gender:
        config.siamese.gender = False
        notes.append("The data set has no gender labels, so the Siamese gender embedding is off (siamese.gender=false).")
    return config, notes


def _position_table(age_labels: AgeLabels) -> torch.Tensor:
    """A lookup table age -> position (-1 for ages that are no label): int64 [max_age + 1]."""
    values = age_labels.values
    table = torch.full((int(values.max()) + 1,), -1, dtype=torch.int64)
    table[values] = torch.arange(len(values))
    return table


@torch.no_grad()
def rapl_outputs(model: nn.Module, images: torch.Tensor, references: torch.Tensor | None = None) -> dict:
    """What a RAPL model predicts for a batch: images [b, 3, H, W] (normalised) ->

    {"age": [b] (EVR, float32), "features": [b, c], "gender": [b] int64 (with GP),
    "female_prob": [b] (with GP), "position_age": [b] int64 (with RAPL and references)}.
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    net = unwrap(model)
    output = net(images, references=references)
    result = {"age": output.age.float(), "features": output.features.float()}
    if output.gender_logits is not None:
        result["gender"] = output.gender_logits.argmax(dim=1)
        result["female_prob"] = torch.softmax(output.gender_logits.float(), dim=1)[:, 1]
    if output.position_logits is not None:
        result["position_age"] = net.position_age(output)  # the second estimate of eq. 12
    return result


@torch.no_grad()
def siamese_outputs(model: nn.Module, images: torch.Tensor) -> dict:
    """Embeddings of a batch: {"embeddings": [b, N_a], "gender_embeddings": [b, N_g] (multi-task), "features": [b, c]}.

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """
    output = unwrap(model)(images)
    result = {"embeddings": output.age_embedding.float(), "features": output.features.float()}
    if output.gender_embedding is not None:
        result["gender_embeddings"] = output.gender_embedding.float()
    return result


class SiameseGallery:
    """The training set's embeddings for kNN: ages from the age embedding, gender from the gender embedding.

    age: a :class:`agekit.knn.Gallery`; gender_embeddings [g', N_g] and gender_labels
    [g'] hold only the training faces of known gender (None without a gender task).
    """

    def __init__(self, age: Gallery, gender_embeddings=None, gender_labels=None):
        self.age, self.gender_embeddings, self.gender_labels = age, gender_embeddings, gender_labels

    @classmethod
    def from_outputs(cls, outputs: dict, ages: torch.Tensor, genders: torch.Tensor) -> "SiameseGallery":
        """Build from :func:`siamese_outputs` over the training set and its labels."""
        device = outputs["embeddings"].device
        if device.type == "mps":  # kNN averages in float64, which MPS lacks
            device = torch.device("cpu")
            outputs = {name: value.to(device) for name, value in outputs.items()}
        ages, genders = ages.to(device), genders.to(device)
        gallery = Gallery(outputs["embeddings"], ages, genders)
        if "gender_embeddings" not in outputs or not bool((genders >= 0).any()):
            return cls(gallery)
        known = genders >= 0
        return cls(gallery, outputs["gender_embeddings"][known], genders[known])

    def predict(self, outputs: dict, k: int) -> dict:
        """Add "age" (mean age of the k nearest, L1) and, when possible, "gender" (majority vote)."""
        k_age = min(k, len(self.age))
        result = dict(outputs)
        result["age"] = self.age.predict(outputs["embeddings"], k=k_age).float()
        if self.gender_embeddings is not None and "gender_embeddings" in outputs:
            k_gender = min(k, len(self.gender_labels))
            query = outputs["gender_embeddings"].to(self.gender_embeddings.device)
            result["gender"] = knn_gender_predict(query, self.gender_embeddings, self.gender_labels, k=k_gender)
        return result

    def state_dict(self) -> dict:
        state = {"age": {key: value.detach().cpu() for key, value in self.age.state_dict().items()}}
        if self.gender_embeddings is not None:
            state["gender_embeddings"] = self.gender_embeddings.detach().cpu()
            state["gender_labels"] = self.gender_labels.detach().cpu()
        return state

    @classmethod
    def from_state_dict(cls, state: dict, device="cpu") -> "SiameseGallery":
        device = torch.device(device)
        device = torch.device("cpu") if device.type == "mps" else device  # as in from_outputs
        age = Gallery.from_state_dict(state["age"]).to(device)
        if "gender_embeddings" not in state:
            return cls(age)
        return cls(age, state["gender_embeddings"].to(device), state["gender_labels"].to(device))


class Method:
    """The interface the trainer calls; see the table at the top of this module.

    ``eval_references`` (RAPL) and ``gallery`` (Siamese) are what prediction needs
    besides the weights; a method without one leaves it None.
    """

    name = ""
    eval_references: torch.Tensor | None = None
    gallery: "SiameseGallery | None" = None

    def __init__(self, config: Config, age_labels: AgeLabels, device: torch.device):
        self.config, self.age_labels, self.device = config, age_labels, device

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> str:
        """The model in a few words, for the first line of a run."""
        raise NotImplementedError

    def forward(self, model: nn.Module, images: torch.Tensor):
        """The training forward pass (model may be wrapped for distributed training)."""
        raise NotImplementedError

    def loss(self, output, ages: torch.Tensor, genders: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(total, {part: detached scalar}) in float32: "total" and each loss term that counts."""
        raise NotImplementedError

    def train_ages(self, output) -> torch.Tensor | None:
        """Ages predicted during training, for the running MAE (None when the method has none)."""
        return None

    def after_batch(self, output, ages: torch.Tensor) -> None:
        """Called after every optimiser step with the batch's outputs."""

    def prepare_evaluation(self, training_outputs, new_weights: bool) -> None:
        """Called before every evaluation; ``new_weights``: an epoch's training pass just ended.

        ``training_outputs()`` gives (:meth:`outputs` over the whole training set, its
        ages, its genders), for a method that predicts from the training set.
        """

    def end_epoch(self, val_mae: float, gather) -> None:
        """Called after validation at the end of every epoch."""

    def outputs(self, model: nn.Module, images: torch.Tensor) -> dict:
        """Per-batch predictions in eval mode (tensors on the device)."""
        raise NotImplementedError

    def finish(self, outputs: dict) -> dict:
        """Turn gathered per-batch outputs into predictions with an "age" entry."""
        return outputs

    def eval_state(self) -> dict:
        """What prediction needs besides the weights (references, gallery), as plain tensors."""
        return {}

    def load_eval_state(self, state: dict) -> None:
        """Inverse of :meth:`eval_state`."""

    def state_dict(self) -> dict:
        """What training needs to continue (reference bank), as plain tensors."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""


class RAPLMethod(Method):
    """RAPL: EVR age, gender prediction, and relative age positions from epoch 2 on."""

    name = "rapl"

    def __init__(self, config: Config, age_labels: AgeLabels, device: torch.device):
        super().__init__(config, age_labels, device)
        self.has_rapl = "RAPL" in config.rapl.variant
        # Algorithm 1 runs where the features are, except on MPS, which lacks the float64 it uses.
        store = "cpu" if self.device.type == "mps" else None
        self.bank = ReferenceBank(age_labels, mode=config.rapl.references, store=store) if self.has_rapl else None
        self.eval_references: torch.Tensor | None = None  # references in use while this epoch trained
        self.positions = _position_table(age_labels).to(device)

    def build_model(self) -> nn.Module:
        from agekit.models import RAPLNet

        return RAPLNet.from_variant(self.config.rapl.variant, self.age_labels, backbone=self.config.model.backbone)

    def describe(self):
        return f"{self.config.rapl.variant}, {self.config.model.backbone}"

    @property
    def references(self) -> torch.Tensor | None:
        """The references of the current epoch (None in epoch 1, and without the RAPL branch)."""
        if self.bank is None or self.bank.references is None:
            return None
        return self.bank.references.to(self.device)

    def forward(self, model, images):
        return model(images, references=self.references)

    def loss(self, output, ages, genders):
        positions = self.positions[ages] if output.position_logits is not None else None
        return rapl_loss(output, ages, genders, positions, lam=self.config.rapl.lam, mu=self.config.rapl.mu)

    def train_ages(self, output):
        return output.age

    def after_batch(self, output, ages):
        if self.bank is not None:
            self.bank.add(output.features.float(), output.age.float(), ages)

    def prepare_evaluation(self, training_outputs, new_weights):
        if new_weights:  # the weights of this epoch were trained with these references; evaluate them together
            self.eval_references = self.references

    def end_epoch(self, val_mae, gather):
        if self.bank is not None:
            self.bank.end_epoch(val_mae=val_mae, gather=gather)  # Algorithm 1 for the next epoch

    def outputs(self, model, images):
        return rapl_outputs(model, images, self.eval_references)

    def eval_state(self):
        refs = self.eval_references
        return {"references": None if refs is None else refs.detach().cpu()}

    def load_eval_state(self, state):
        refs = state.get("references")
        self.eval_references = None if refs is None else refs.to(self.device)

    def state_dict(self):
        return {} if self.bank is None else {"bank": self.bank.state_dict()}

    def load_state_dict(self, state):
        if self.bank is not None:
            self.bank.load_state_dict(state["bank"], device=self.bank.store or self.device)


class SiameseMethod(Method):
    """The Siamese baseline: contrastive training, kNN prediction over the training gallery."""

    name = "siamese"

    def build_model(self) -> nn.Module:
        from agekit.models.siamese import SiameseNet

        s = self.config.siamese
        return SiameseNet(self.config.model.backbone, age_dim=s.age_dim, gender_dim=s.gender_dim,
                          dropout=s.dropout, gender=s.gender)

    def describe(self):
        return f"{'multi-task' if self.config.siamese.gender else 'age only'}, {self.config.model.backbone}"

    def forward(self, model, images):
        return model(images)

    def loss(self, output, ages, genders):
        return siamese_loss(output, ages, genders, margin=self.config.siamese.margin, q=self.config.siamese.q)

    def outputs(self, model, images):
        return siamese_outputs(model, images)

    def prepare_evaluation(self, training_outputs, new_weights):
        if new_weights or self.gallery is None:  # the kNN gallery of the weights being evaluated
            self.gallery = SiameseGallery.from_outputs(*training_outputs())

    def finish(self, outputs):
        if self.gallery is None:
            raise ValueError("The Siamese model predicts by kNN over a training gallery, but none was built.")
        return self.gallery.predict(outputs, self.config.siamese.k)

    def eval_state(self):
        return {} if self.gallery is None else {"gallery": self.gallery.state_dict()}

    def load_eval_state(self, state):
        if "gallery" in state:
            self.gallery = SiameseGallery.from_state_dict(state["gallery"], self.device)


METHOD_CLASSES = {"rapl": RAPLMethod, "siamese": SiameseMethod}


def make_method(config: Config, age_labels: AgeLabels, device) -> Method:
    """The plug-in for ``config.method``. Taught in ``notebooks/06_rapl_training.ipynb``."""
    return METHOD_CLASSES[config.method](config, age_labels, torch.device(device))


def bare_model_predictor(model: nn.Module, references: torch.Tensor | None = None, gallery=None, k: int = KNN_K):
    """(outputs_fn, finish) that predict with a bare RAPLNet (with ``references``) or SiameseNet (kNN over ``gallery``).

    gallery: a :class:`SiameseGallery` or an :class:`agekit.knn.Gallery` (None: embeddings only).
    """
    from agekit.models import RAPLNet

    if isinstance(unwrap(model), RAPLNet):
        def outputs(m, images):
            return rapl_outputs(m, images, None if references is None else references.to(images.device))

        return outputs, (lambda out: out)
    if isinstance(gallery, Gallery):
        gallery = SiameseGallery(gallery)
    return siamese_outputs, (lambda out: out if gallery is None else gallery.predict(out, k))
