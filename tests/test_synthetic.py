"""Tests of the synthetic aging-faces generator (agekit.data.synthetic and its renderer)."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from agekit.data import _render
from agekit.data.synthetic import (
    SyntheticFaces, age_prior, face_grid, load_synthetic_faces, make_synthetic_faces, preview_grid, render_face,
    render_faces, sample_people, save_synthetic_faces, write_synthetic_dataset,
)


@pytest.fixture(scope="module")
def faces() -> SyntheticFaces:
    return make_synthetic_faces(n=60, image_size=32, seed=0)


# ----------------------------------------------------------------------------------
# the data set
# ----------------------------------------------------------------------------------


def test_shapes_and_dtypes(faces):
    assert len(faces) == 60
    assert faces.images.shape == (60, 3, 32, 32) and faces.images.dtype == torch.uint8
    for name in ("ages", "genders", "identities"):
        assert getattr(faces, name).shape == (60,) and getattr(faces, name).dtype == torch.int64
    assert faces.apparent_ages.dtype == torch.float32
    assert faces.n_identities == 12 and faces.meta["age_range"] == [1, 90]
    # not blank: every image has some contrast
    assert (faces.images.float().flatten(1).std(1) > 10).all()


def test_same_arguments_give_identical_pixels_whatever_the_thread_count(faces):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = make_synthetic_faces(n=60, image_size=32, seed=0)
    finally:
        torch.set_num_threads(threads)
    for name in ("images", "ages", "genders", "identities", "apparent_ages"):
        assert torch.equal(getattr(faces, name), getattr(again, name)), name


def _whole_chunks(ages, genders, identities, uniforms, difficulty, seed, size, generator):
    """The plain way: each chunk's noise, then the whole chunk drawn in one ``render`` call."""
    step, parts = _render.chunk_size(size), []
    for start in range(0, ages.shape[0], step):
        part = slice(start, start + step)
        noise = torch.randn(ages[part].shape[0], 4, size, size, generator=generator)
        parts.append(_render.render(ages[part], genders[part], identities[part], uniforms[part], difficulty, seed,
                                    size, noise))
    return torch.cat(parts)


def test_batches_on_several_workers_give_the_pixels_of_whole_chunks(monkeypatch):
    """Chunks of 72 photos (as at 120 px), so batches of 64 straddle chunk ends; 1-3 workers."""
    monkeypatch.setattr(_render, "chunk_size", lambda size: 72)
    n, size, seed = 100, 40, 4
    people = torch.arange(n) % 37
    ages = torch.linspace(0.5, 110.0, n)
    genders = _render.identity_genders(seed, people)
    uniforms = torch.rand(n, _render.NUM_NUISANCE_UNIFORMS, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = _whole_chunks(ages, genders, people, uniforms, "hard", seed, size, torch.Generator().manual_seed(9))
        for workers in (1, 2, 3):
            torch.set_num_threads(workers)
            got = _render.render_batches(ages, genders, people, uniforms, "hard", seed, size,
                                         torch.Generator().manual_seed(9), torch.device("cpu"))
            assert torch.get_num_threads() == workers   # the caller's setting is restored
            assert torch.equal(got, expected), workers
    finally:
        torch.set_num_threads(threads)


def test_data_set_is_the_same_on_one_two_and_three_threads():
    threads, drawn = torch.get_num_threads(), []
    try:
        for workers in (1, 2, 3):
            torch.set_num_threads(workers)
            drawn.append(make_synthetic_faces(n=200, image_size=24, seed=3, difficulty="hard").images)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(drawn[0], drawn[1]) and torch.equal(drawn[0], drawn[2])


def test_at_most_two_chunks_of_noise_are_alive(monkeypatch):
    """Memory stays bounded: a chunk's noise is freed once its photos are drawn."""
    import weakref

    drawn, alive_at_draw, randn = [], [], torch.randn

    def counting_randn(*args, **kwargs):
        alive_at_draw.append(sum(ref() is not None for ref in drawn))
        noise = randn(*args, **kwargs)
        drawn.append(weakref.ref(noise))
        return noise

    monkeypatch.setattr(torch, "randn", counting_randn)
    monkeypatch.setattr(_render, "chunk_size", lambda size: 2 * _render.BATCH)   # small chunks, same code
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        make_synthetic_faces(n=8 * _render.BATCH, image_size=24, seed=0, difficulty="easy")
    finally:
        torch.set_num_threads(threads)
    assert len(alive_at_draw) == 4 and max(alive_at_draw) <= 2, alive_at_draw


def test_different_seeds_give_different_faces(faces):
    other = make_synthetic_faces(n=60, image_size=32, seed=1)
    assert (faces.images != other.images).float().mean() > 0.5
    assert not torch.equal(faces.ages, other.ages)


def test_ages_are_whole_years_within_the_range():
    for low, high in ((1, 90), (20, 30), (40, 40)):
        _, ages = sample_people(500, 100, (low, high), 30, torch.Generator().manual_seed(0))
        assert ages.dtype == torch.int64
        assert ages.min() >= low and ages.max() <= high
    small = make_synthetic_faces(n=10, image_size=16, seed=2, age_range=(60, 65))
    assert small.ages.min() >= 60 and small.ages.max() <= 65


def test_age_distribution_favours_adults():
    prior = age_prior((1, 90))
    assert prior.shape == (90,) and math.isclose(prior.sum().item(), 1.0, rel_tol=1e-9)
    assert 25 <= int(prior.argmax()) + 1 <= 40
    _, ages = sample_people(5000, 1000, (1, 90), 30, torch.Generator().manual_seed(0))
    per_year = lambda lo, hi: ((ages >= lo) & (ages <= hi)).float().mean() / (hi - lo + 1)  # noqa: E731
    adults, children, elderly = per_year(25, 40), per_year(1, 12), per_year(75, 90)
    assert adults > 2 * children and adults > 2 * elderly
    # a uniform draw would put ~1/90 at each age; the mode is far above that
    assert torch.bincount(ages).max() / 5000 > 2 / 90


def test_identities_repeat_at_several_ages_with_fixed_traits(faces):
    seen_several = 0
    for person in faces.identities.unique():
        mine = faces.identities == person
        assert faces.genders[mine].unique().numel() == 1
        seen_several += faces.ages[mine].unique().numel() >= 2
        # the apparent-age offset is the person's, not the photo's: eq. in apparent_ages
        ages = faces.ages[mine].float()
        offset = (faces.apparent_ages[mine] - ages) / (ages / 20).clamp(0.25, 1.0)
        unclamped = faces.apparent_ages[mine] > 0.25
        assert torch.allclose(offset[unclamped], offset[unclamped][0].expand(int(unclamped.sum())), atol=1e-4)
    assert seen_several >= 8  # of 12 people
    # traits depend on (seed, identity) only
    a = _render.identity_traits(0, torch.tensor([3, 5, 3]))
    assert all(v[0] == v[2] and v[0] != v[1] for v in a.values())


def test_both_genders_present(faces):
    assert set(faces.genders.tolist()) == {0, 1}


def test_apparent_age_offset_has_sd_about_three_years():
    offsets = _render.apparent_age_offsets(0, torch.arange(20000))
    assert abs(offsets.mean().item()) < 0.1 and abs(offsets.std().item() - 3.0) < 0.1


def test_age_can_be_read_from_pixels():
    """A ridge regression on pooled pixels beats guessing the mean age by a wide margin."""
    data = make_synthetic_faces(n=300, image_size=32, seed=0)
    x = F.avg_pool2d(data.images.double() / 255, 2).flatten(1)
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = data.ages.double()
    train = data.identities % 3 != 0  # people in the test part are never seen in training
    w = torch.linalg.solve(x[train].T @ x[train] + torch.eye(x.shape[1], dtype=x.dtype), x[train].T @ y[train])
    probe = (x[~train] @ w - y[~train]).abs().mean()
    guess = (y[~train] - y[train].mean()).abs().mean()
    assert probe < 0.8 * guess


def test_hair_region_brightens_with_age():
    """Greying and receding hair: the top of the head gets brighter from 25 to 50 to 80."""
    people = torch.arange(24)
    ages = torch.tensor([25.0, 50.0, 80.0])
    images = render_faces(ages.repeat(24), (people % 2).repeat_interleave(3), people.repeat_interleave(3),
                          image_size=32)
    top = images[:, :, 2:8, 10:22].float().mean((1, 2, 3)).view(24, 3).mean(0)
    assert top[0] + 10 < top[1] and top[1] + 10 < top[2]


def test_subset_keeps_metadata(faces):
    part = faces.subset(faces.genders == 1)
    assert len(part) == int((faces.genders == 1).sum()) and (part.genders == 1).all()
    assert part.seed == faces.seed and part.image_size == 32
    assert torch.equal(faces.subset([4]).images[0], faces.images[4])
    assert torch.equal(faces.subset(slice(2, 5)).ages, faces.ages[2:5])


# ----------------------------------------------------------------------------------
# single faces for sliders
# ----------------------------------------------------------------------------------


def test_render_face_keeps_the_person_and_changes_with_age():
    young = render_face(30, "female", identity=4, image_size=48)
    nearly = render_face(33, 1, identity=4, image_size=48)
    old = render_face(80, 1, identity=4, image_size=48)
    stranger = render_face(30, 1, identity=5, image_size=48)
    assert young.shape == (3, 48, 48) and young.dtype == torch.uint8
    # background, light and noise belong to the person: the corner is untouched by age
    assert torch.equal(young[:, :4, :4], old[:, :4, :4])
    assert not torch.equal(young[:, :4, :4], stranger[:, :4, :4])

    def dist(a, b):
        return (a.float() - b.float()).abs().mean().item()

    assert 0 < dist(young, nearly) < 0.5 * dist(young, old)
    assert dist(young, nearly) < 0.5 * dist(young, stranger)
    # deterministic
    assert torch.equal(young, render_face(30, 1, identity=4, image_size=48))


def test_render_faces_matches_render_face_up_to_pixel_noise():
    batch = render_faces([10.0, 60.0], [0, 1], [2, 3], image_size=32)
    alone = render_face(60.0, 1, identity=3, image_size=32)
    other = render_face(60.0, 1, identity=4, image_size=32)
    assert (batch[1].float() - alone.float()).abs().mean() < 4.0      # easy noise: sd of at most 2 grey levels
    assert (other.float() - alone.float()).abs().mean() > 10.0


# ----------------------------------------------------------------------------------
# drawing equations against independent computations
# ----------------------------------------------------------------------------------


def test_signed_distances_and_coverage():
    x = torch.tensor([0.0, 0.3, 0.5, 1.0, 0.6])
    y = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.8])
    # a circle is an ellipse with equal radii: distance = |p| - r exactly
    assert torch.allclose(_render._sd_ellipse(x, y, 0.5, 0.5), torch.hypot(x, y) - 0.5, atol=1e-5)
    # on the axes of an ellipse the distance is exact too
    assert torch.allclose(_render._sd_ellipse(torch.tensor([0.0, 0.0, 0.7]), torch.tensor([0.1, 0.3, 0.0]), 0.5, 0.2),
                          torch.tensor([-0.1, 0.1, 0.2]), atol=1e-5)
    # eq. R1 by hand: half a pixel inside -> 1, on the edge -> 1/2, half a pixel out -> 0
    px = 0.1
    assert torch.allclose(_render._cover(torch.tensor([-0.05, 0.0, 0.02, 0.05]), px),
                          torch.tensor([1.0, 0.5, 0.3, 0.0]))
    d = _render._sd_segment(torch.tensor([0.5, 2.0]), torch.tensor([1.0, 0.0]), 0.0, 0.0, 1.0, 0.0, 0.1)
    assert torch.allclose(d, torch.tensor([0.9, 0.9]))
    box = _render._sd_round_box(torch.tensor([0.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 1.5]), 1.0, 1.0, 0.0)
    assert torch.allclose(box, torch.tensor([-1.0, 1.0, 0.5]))


def test_over_operator_matches_hand_computation():
    canvas = _render._Frame.blank(1, 2, torch.zeros(1, 1, 1), {})
    canvas.over(torch.full((1, 2, 2), 0.5), torch.tensor([[1.0, 0.0, 0.0]]))
    canvas.over(torch.full((1, 2, 2), 0.5), torch.tensor([[0.0, 1.0, 0.0]]))
    # eq. R2 twice: colour (0.25, 0.5, 0), alpha 0.75
    assert torch.allclose(canvas.rgb[0, :, 0, 0], torch.tensor([0.25, 0.5, 0.0]))
    assert torch.allclose(canvas.alpha[0, 0, 0, 0], torch.tensor(0.75))


def test_blur_matches_a_convolution():
    img = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.8, 1.5])
    out = _render._blur(img, sigma, radius=3)
    for i in range(2):
        k = torch.exp(-0.5 * (torch.arange(-3, 4.0) / sigma[i]) ** 2)
        k = k / k.sum()
        padded = F.pad(img[i:i + 1], (3, 3, 3, 3), mode="replicate")
        ref = F.conv2d(padded, (k[:, None] * k[None, :]).expand(3, 1, 7, 7), groups=3)
        assert torch.allclose(out[i:i + 1], ref, atol=1e-5)


def test_replicate_padding_is_f_pad_exactly():
    img = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_render._replicate(img, 3, -1), F.pad(img, (3, 3, 0, 0), mode="replicate"))
    assert torch.equal(_render._replicate(img, 2, -2), F.pad(img, (0, 0, 2, 2), mode="replicate"))


def test_pose_identity_and_quarter_turn():
    rgba = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    still = {"rotation": torch.zeros(1), "scale": torch.ones(1), "yaw": torch.zeros(1), "shift": torch.zeros(1, 2)}
    assert torch.allclose(_render.pose(rgba, still), rgba, atol=1e-5)
    turned = dict(still, rotation=torch.tensor([math.pi / 2]))
    out = _render.pose(rgba, turned)
    assert torch.allclose(out, torch.rot90(rgba, 1, (2, 3)), atol=1e-4) or \
        torch.allclose(out, torch.rot90(rgba, -1, (2, 3)), atol=1e-4)


def test_drawing_in_windows_changes_no_pixel(monkeypatch):
    """Small parts are drawn only in windows around them; drawing everywhere must agree."""
    for name, cfg in list(_render.DIFFICULTIES.items()):
        monkeypatch.setitem(_render.DIFFICULTIES, name, dataclasses.replace(cfg, glasses=100.0))
    people = torch.arange(20)
    ages = torch.tensor([0.0, 3.0, 12.0, 30.0, 55.0, 75.0, 90.0, 110.0, 120.0, 45.0]).repeat(2)
    windowed = render_faces(ages, people % 2, people, image_size=40, difficulty="hard")
    monkeypatch.setattr(_render._Frame, "window", lambda self, *args, **kwargs: self)
    everywhere = render_faces(ages, people % 2, people, image_size=40, difficulty="hard")
    assert torch.equal(windowed, everywhere)


def test_hash_uniform_is_deterministic_and_spread():
    u = _render.hash_uniform(7, torch.arange(20000), 3)
    assert torch.equal(u, _render.hash_uniform(7, torch.arange(20000), 3))
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003
    # neighbouring keys, streams and seeds are unrelated
    v = _render.hash_uniform(7, torch.arange(20000), 4)
    w = _render.hash_uniform(8, torch.arange(20000), 3)
    assert abs(torch.corrcoef(torch.stack([u, v, w]))[0, 1:]).max() < 0.03
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1]) < 0.03


def test_age_functions_are_continuous_and_monotone():
    a = torch.linspace(0, 100, 10001)
    for f in (_render.growth, lambda t: _render.ramp(t, 30.0, 70.0)):
        v = f(a)
        assert (v[1:] >= v[:-1]).all() and (v[1:] - v[:-1]).abs().max() < 2e-3
    assert _render.growth(torch.tensor(0.0)) == 0 and _render.growth(torch.tensor(18.0)) == 1


# ----------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------


def test_save_load_round_trip(faces, tmp_path):
    path = save_synthetic_faces(faces, tmp_path / "set")
    assert path == tmp_path / "set" / "faces.pt"
    assert sorted(os.listdir(tmp_path / "set")) == ["faces.pt"]
    back = load_synthetic_faces(tmp_path / "set")
    for name in ("images", "ages", "genders", "identities", "apparent_ages"):
        assert torch.equal(getattr(back, name), getattr(faces, name))
    assert back.meta == faces.meta
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "agekit.synthetic_faces" and raw["images"].dtype == torch.uint8


def test_interrupted_save_leaves_old_file_and_no_temp(faces, tmp_path, monkeypatch):
    save_synthetic_faces(faces, tmp_path)
    before = (tmp_path / "faces.pt").read_bytes()

    def broken_save(obj, handle):
        handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_synthetic_faces(faces.subset([0]), tmp_path)
    assert os.listdir(tmp_path) == ["faces.pt"]
    assert (tmp_path / "faces.pt").read_bytes() == before


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="faces.pt"):
        load_synthetic_faces(tmp_path / "nothing")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "faces.pt")
    with pytest.raises(ValueError, match="not a synthetic-faces file"):
        load_synthetic_faces(tmp_path)
    (tmp_path / "faces.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a synthetic-faces file"):
        load_synthetic_faces(tmp_path)


def test_preview_grid_png(faces, tmp_path):
    path = preview_grid(tmp_path / "p.png", ages=(1, 50, 90), rows_per_gender=1, image_size=32, palette=True)
    with Image.open(path) as image:
        assert image.size == (90 + 3 * 34, 22 + 2 * 34) and image.mode == "P"
    assert sorted(os.listdir(tmp_path)) == ["p.png"]
    grid = face_grid(faces, ages=(5, 40), rows_per_gender=2, labels=False)
    assert grid.size == (2 * 34, 4 * 34)
    # with faces given, the men's rows hold men and the women's rows women
    tiles = torch.tensor(numpy.asarray(grid)).permute(2, 0, 1)
    first = tiles[:, :32, :32]
    assert any(torch.equal(first, img) for img in faces.images[faces.genders == 0])


def test_write_synthetic_dataset(tmp_path):
    written = write_synthetic_dataset(tmp_path / "out", n=12, image_size=16, seed=3, preview=True)
    assert set(written) == {"faces", "preview"}
    assert all(p.is_file() for p in written.values())
    assert len(load_synthetic_faces(written["faces"])) == 12


# ----------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, shown", [
    ({"n": 0}, ValueError, "0"),
    ({"n": -5}, ValueError, "-5"),
    ({"n": 2.5}, (TypeError, ValueError), "2.5"),
    ({"n": "10"}, (TypeError, ValueError), "'10'"),
    ({"image_size": 8}, ValueError, "image_size=8"),
    ({"age_range": (50, 10)}, ValueError, "(50, 10)"),
    ({"age_range": ()}, (TypeError, ValueError), "()"),
    ({"difficulty": "medium"}, ValueError, "'medium'"),
    ({"n": 4, "n_identities": 9}, ValueError, "n_identities=9"),
    ({"seed": -3}, ValueError, "-3"),
    ({"image_size": 64.5}, (TypeError, ValueError), "64.5"),
])
def test_bad_arguments_are_named(kwargs, error, shown):
    with pytest.raises(error) as info:
        make_synthetic_faces(**{"n": 4, "image_size": 16, **kwargs})
    assert shown in str(info.value)
    assert list(kwargs)[-1] in str(info.value)


def test_bad_render_face_arguments():
    with pytest.raises(ValueError, match="'robot'"):
        render_face(30, "robot")
    with pytest.raises(ValueError, match="130"):
        render_face(130, 0)
    with pytest.raises(ValueError, match="-1"):
        render_face(30, 0, identity=-1)
