"""Interactive widgets of the course (ipywidgets).

Each widget draws into an ``ipywidgets.Image`` as PNG, so it works the same in
JupyterLab, in a static HTML export (the last picture stays) and in a browser
test that compares pictures before and after moving a slider.
"""

from __future__ import annotations

import io

import torch

from agekit.config import CONTRASTIVE_Q, SIAMESE_MARGIN


def png_bytes(image: torch.Tensor, scale: int = 1) -> bytes:
    """A uint8 [3, H, W] image as PNG bytes, optionally enlarged ``scale`` times (nearest)."""
    from PIL import Image

    array = image.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def face_explorer(image_size: int = 128, difficulty: str = "easy", age: int = 30, max_age: int = 90):
    """Sliders for age, gender and person that redraw one synthetic face (01_synthetic_faces).

    The same person keeps their traits while the age slider moves, so students
    watch one face grow up and grow old.
    """
    import ipywidgets as widgets

    from agekit.data.synthetic import render_face

    style = {"description_width": "56px"}  # the three labels line up
    wide = widgets.Layout(width="340px")
    age_slider = widgets.IntSlider(value=age, min=1, max=max_age, description="age", continuous_update=False,
                                   style=style, layout=wide)
    gender = widgets.ToggleButtons(options=[("male", 0), ("female", 1)], value=0, style={"button_width": "100px"})
    # ToggleButtons would put its description on a line of its own; a label of the sliders' width keeps one column.
    gender_label = widgets.HTML("<div style='width:56px;text-align:right;padding-right:8px'>gender</div>")
    person = widgets.IntSlider(value=0, min=0, max=50, description="person", continuous_update=False,
                               style=style, layout=wide)
    picture = widgets.Image(format="png", width=256, height=256)
    caption = widgets.Label(layout=widgets.Layout(margin="8px 0 0 60px"))

    def redraw(_=None):
        face = render_face(age_slider.value, gender.value, identity=person.value, image_size=image_size,
                           difficulty=difficulty)
        picture.value = png_bytes(face, scale=max(1, 256 // image_size))
        caption.value = f"person {person.value}, {('male', 'female')[gender.value]}, {age_slider.value} years"

    for control in (age_slider, gender, person):
        control.observe(redraw, names="value")
    redraw()
    controls = widgets.VBox([age_slider, widgets.HBox([gender_label, gender]), person, caption], layout=widgets.Layout(margin="0 0 0 16px"))
    box = widgets.HBox([picture, controls], layout=widgets.Layout(align_items="center"))
    box.add_class("agekit-face-explorer")
    return box


def contrastive_loss_figure(q: float = CONTRASTIVE_Q, margin: float = SIAMESE_MARGIN,
                            max_distance: float | None = None):
    """The two branches of the revised contrastive loss against the L1 distance D (07).

    Left: loss for a 'same' pair (|age gap| <= margin) and a 'different' pair.
    Right: which age gaps count as 'same' for this margin.
    """
    import matplotlib.pyplot as plt

    from agekit.losses import revised_contrastive_loss

    top = max_distance or 2.5 * q
    distance = torch.linspace(0, top, 200)
    # evaluate the package's loss on two-point embeddings at each distance
    points = torch.stack([torch.zeros_like(distance), distance], 1)[:, :, None]
    same = torch.stack([revised_contrastive_loss(p, torch.tensor([30.0, 30.0]), margin, q) for p in points])
    different = torch.stack([revised_contrastive_loss(p, torch.tensor([30.0, 31.0 + margin]), margin, q) for p in points])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    left.plot(distance.numpy(), same.detach().numpy(), label="same class: (2/Q) D²")
    left.plot(distance.numpy(), different.detach().numpy(), label="different class: 2Q exp(-2.77 D/Q)")
    left.set_ylim(0, 2.2 * q)
    left.set_xlabel("L1 distance D between the two embeddings")
    left.set_ylabel("loss of the pair")
    left.set_title(f"Revised contrastive loss, Q = {q:g}")
    left.legend(loc="upper right")
    gaps = torch.arange(0, 11)
    right.bar(gaps.numpy(), (gaps <= margin).float().numpy(),
              color=["tab:blue" if g <= margin else "tab:gray" for g in gaps.tolist()])
    right.set_xlabel("age gap |a_i - a_j| (years)")
    right.set_ylabel("counts as the same class")
    right.set_title(f"margin = {margin:g} years")
    right.set_yticks([0, 1])
    right.set_yticklabels(["no", "yes"])
    fig.tight_layout()
    return fig


def contrastive_loss_explorer(q: float = CONTRASTIVE_Q, margin: float = SIAMESE_MARGIN):
    """Sliders for Q and the age margin that redraw the loss curves (07_siamese_metric_learning)."""
    import ipywidgets as widgets

    q_slider = widgets.FloatLogSlider(value=q, base=10, min=0, max=3, step=0.05, description="Q",
                                      continuous_update=False)
    margin_slider = widgets.IntSlider(value=int(margin), min=0, max=10, description="margin",
                                      continuous_update=False)
    picture = widgets.Image(format="png")

    def redraw(_=None):
        picture.value = figure_png(contrastive_loss_figure(q_slider.value, margin_slider.value))

    q_slider.observe(redraw, names="value")
    margin_slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([q_slider, margin_slider]), picture])
    box.add_class("agekit-loss-explorer")
    return box


def age_weights_figure(references: torch.Tensor, p: torch.Tensor, age_values=None, title: str = ""):
    """The age weights W = sigmoid(R^T p) as a heat map (colours fixed to 0..1) and their histogram (05).

    references: R [n, c]; p: [n]; age_values: the n label values for the age axis.
    W is computed by :class:`agekit.models.AgeReweighting` itself (eqs. 4-5).
    """
    import matplotlib.pyplot as plt

    from agekit.models import AgeReweighting
    from agekit.viz import plot_heatmap

    references = torch.as_tensor(references).detach().cpu().float()
    p = torch.as_tensor(p, dtype=torch.float32).detach().cpu().reshape(-1)
    module = AgeReweighting(references.shape[0])
    if p.numel() != module.num_ages:
        raise ValueError(f"p must have one value per age label ({module.num_ages}), got {p.numel()}.")
    with torch.no_grad():
        module.p.copy_(p)
        weights = module.age_weights(references)  # eqs. 4-5: [c, n]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    ticks = None if age_values is None else [int(v) for v in torch.as_tensor(age_values).tolist()]
    plot_heatmap(weights, "age label", "feature channel", title or "Age weights W = sigmoid(Rᵀ p)", ax=left,
                 xticklabels=ticks, cmap="magma", colorbar="weight w")
    left.images[0].set_clim(0.0, 1.0)
    right.hist(weights.flatten().numpy(), bins=20, range=(0.0, 1.0), color="tab:purple")
    right.set_xlabel("weight w")
    right.set_ylabel("number of (channel, age) pairs")
    right.set_title("distribution of W")
    fig.tight_layout()
    return fig


def age_weights_explorer(references: torch.Tensor, age_values=None, p=None):
    """Sliders on p that redraw the age weights W = sigmoid(R^T p) (05_age_reweighting).

    ``scale`` multiplies every p_k; ``ages`` picks a band of age labels whose p_k is set to
    ``p in band`` (before scaling). p starts at ones (AgeReweighting's initial value) unless given.
    """
    import ipywidgets as widgets

    references = torch.as_tensor(references).detach().cpu().float()
    n = references.shape[0]
    ages = torch.arange(n) if age_values is None else torch.as_tensor(age_values).reshape(-1).cpu()
    if ages.numel() != n:
        raise ValueError(f"age_values must have one value per row of references ({n}), got {ages.numel()}.")
    base = torch.ones(n) if p is None else torch.as_tensor(p, dtype=torch.float32).reshape(-1).cpu()
    low, high = int(ages.min()), int(ages.max())
    scale = widgets.FloatSlider(value=1.0, min=-3.0, max=3.0, step=0.1, description="scale p",
                                continuous_update=False)
    band = widgets.IntRangeSlider(value=(low + (high - low) // 3, low + 2 * (high - low) // 3), min=low, max=high,
                                  description="ages", continuous_update=False)
    band_p = widgets.FloatSlider(value=1.0, min=-5.0, max=5.0, step=0.25, description="p in band",
                                 continuous_update=False)
    picture = widgets.Image(format="png")
    caption = widgets.Label()

    def redraw(_=None):
        inside = (ages >= band.value[0]) & (ages <= band.value[1])
        values = torch.where(inside, torch.full_like(base, band_p.value), base) * scale.value
        picture.value = figure_png(age_weights_figure(references, values, ages))
        caption.value = (f"p = {scale.value:g} × ({band_p.value:g} for ages {band.value[0]}-{band.value[1]}, "
                         f"else the starting p)")

    for control in (scale, band, band_p):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([scale, band_p]), band, picture, caption])
    box.add_class("agekit-age-weights-explorer")
    return box
