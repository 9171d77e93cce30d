"""PNG histograms of gate margins and output errors, for people who would rather look than read.

Needs matplotlib (``pip install 'scconv-deploy[plots]'``); imported only when plots are asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DependencyError
from .golden import Golden


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise DependencyError("--plots needs matplotlib: pip install 'scconv-deploy[plots]'") from err
    return plt


def _save(plt, fig, ax, path: Path, legend_size: int) -> None:
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_gate_margins(golden: Golden, path: Path) -> None:
    """Per block: the distribution over samples of the smallest gate margin |r - t|."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4))
    floor = 1e-9
    bins = np.logspace(np.log10(floor), 0, 50)
    for b, spec in enumerate(golden.gates):
        ax.hist(np.clip(golden.margins[:, b], floor, None), bins=bins, histtype="step", label=spec.name)
    ax.axvline(golden.tie_guard, color="k", linestyle="--", label=f"tie guard {golden.tie_guard:g}")
    ax.set(
        xscale="log",
        xlabel="smallest |r - t| in the sample (clipped at 1e-9)",
        ylabel="samples",
        title="How close each sample's gates come to their threshold",
    )
    _save(plt, fig, ax, path, legend_size=7)


def plot_output_errors(golden: Golden, runs: dict, diverged: list[int], path: Path) -> None:
    """Absolute output error per element: every sample with PyTorch's decisions fed in, and, as
    deployed, the samples whose own decisions differed (``runs``: ``VerificationResult.runs``)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4))
    floor = 1e-9
    bins = np.logspace(np.log10(floor), 1, 50)
    series = []
    if "forced" in runs:
        series.append(
            (
                f"decisions forced ({golden.samples} samples)",
                runs["forced"].outputs,
                np.arange(golden.samples),
            )
        )
    if "deployed" in runs and diverged:
        rows = np.asarray(diverged, dtype=int)
        series.append((f"as deployed, diverged ({len(rows)} samples)", runs["deployed"].outputs, rows))
    for label, outputs, rows in series:
        err = np.concatenate(
            [np.abs(o[rows] - g[rows]).ravel() for o, g in zip(outputs, golden.outputs, strict=True)]
        )
        ax.hist(np.clip(err, floor, None), bins=bins, histtype="step", label=label)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="|artefact - PyTorch| per output element (clipped at 1e-9)",
        ylabel="elements",
        title="Output error against PyTorch",
    )
    _save(plt, fig, ax, path, legend_size=8)
