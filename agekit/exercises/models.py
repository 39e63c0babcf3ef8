"""Checks for what a network computes: a convolution's output size, a bottleneck's parameters, PCA of features."""

from __future__ import annotations

from collections.abc import Callable

import torch

from agekit.exercises.base import _close, _exercise, _over_trials


@_exercise
def check_conv_output_size(student: Callable) -> None:
    """Exercise (03): ``student(size, kernel, stride, padding) -> int``, the side of a square convolution's output.

    Compared with the shape torch's own ``conv2d`` returns, over cases that need the rounding down.
    """
    import torch.nn.functional as F

    cases = [(112, 3, 1, 1), (112, 3, 2, 1), (56, 1, 2, 0), (7, 3, 2, 1), (31, 3, 2, 1), (32, 5, 1, 2),
             (15, 5, 3, 0), (14, 3, 2, 0), (9, 1, 1, 0), (28, 7, 2, 3)]
    for size, kernel, stride, padding in cases:
        expected = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel),
                            stride=stride, padding=padding).shape[-1]
        got = student(size, kernel, stride, padding)
        got = got.item() if isinstance(got, torch.Tensor) else got
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != expected:
            raise AssertionError(
                f"size={size}, kernel={kernel}, stride={stride}, padding={padding}: expected {expected}, got {got!r}. "
                "Pad both sides (2 * padding), count the kernel positions that fit, and round down: "
                "(size + 2 * padding - kernel) // stride + 1."
            )
    print(f"Correct: your output sizes match torch's conv2d in all {len(cases)} cases.")


@_exercise
def check_bottleneck_parameters(student: Callable) -> None:
    """Exercise (03): ``student(in_channels, depth) -> int``, the learnable parameters of one bottleneck_IR unit.

    Compared with ``agekit.models.ir.BottleneckIR(in_channels, depth, stride=2)``.
    """
    from agekit.models.ir import BottleneckIR

    for in_channels, depth in [(64, 64), (64, 128), (128, 256), (256, 256), (3, 8), (16, 32), (32, 32)]:
        unit = BottleneckIR(in_channels, depth, stride=2)
        expected = sum(parameter.numel() for parameter in unit.parameters())
        got = student(in_channels, depth)
        got = got.item() if isinstance(got, torch.Tensor) else got
        if got != expected:
            raise AssertionError(
                f"in_channels={in_channels}, depth={depth}: expected {expected:,} parameters, got {got!r}. "
                "Count BatchNorm as 2 per channel (weight and bias; running statistics are not learnt), "
                "PReLU as 1 per channel, the 3x3 convolutions without bias, and a 1x1 convolution plus "
                "BatchNorm on the shortcut only when the width changes."
            )
    print("Correct: your parameter count matches agekit's BottleneckIR for every width.")


@_over_trials("Correct: your PCA matches scikit-learn's projection (up to the sign of each component).", trials=4)
def check_pca(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (08): ``student(x [n, d], n_components) -> projection [n, n_components]`` (PCA).

    Compared with scikit-learn's ``PCA(n_components).fit_transform(x)``. The sign of a
    principal direction is arbitrary, so each column may come out flipped.
    """
    from sklearn.decomposition import PCA

    n, d, k = 40 + 10 * trial, 5 + trial, 2 + trial % 2
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    spread = torch.linspace(4.0, 0.5, d, dtype=torch.float64)  # distinct variances: one answer up to sign
    offset = 5.0 + torch.randn(d, generator=g, dtype=torch.float64)  # far from the origin
    x = (torch.randn(n, d, generator=g, dtype=torch.float64) * spread) @ rotation.T + offset
    expected = torch.as_tensor(PCA(n_components=k, svd_solver="full").fit_transform(x.numpy()))
    got = torch.as_tensor(student(x.clone(), k)).detach().cpu().double()
    if got.shape != expected.shape:
        raise AssertionError(
            f"projection: expected shape {tuple(expected.shape)} (one row per point, one column per "
            f"component), got {tuple(got.shape)}. Multiply the centred data by the first "
            f"{k} right singular vectors: x_c @ Vh[:{k}].T."
        )
    signs = torch.where((got * expected).sum(0) < 0, -1.0, 1.0).to(torch.float64)
    _close(
        "projection", got * signs, expected, atol=1e-4,
        hint="Centre each column first (subtract the mean), take torch.linalg.svd(x_c, full_matrices=False), "
             "and project onto the rows of Vh with the largest singular values: "
             "x_c @ Vh[:k].T (= U[:, :k] * S[:k]).",
    )
