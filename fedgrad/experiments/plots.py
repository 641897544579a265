"""PNG plots for run reports and comparisons (matplotlib, headless).

Only ``fedgrad report`` and ``fedgrad compare`` import this module, and only when they draw: matplotlib
costs about a second and 40 MiB at import, which training processes should not pay. The ``Agg`` backend
renders to files without a display, so the plots work on servers and in CI alike.

Every function takes plain numbers (no run directories, no result rows), writes one PNG and returns its path.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import EngFormatter, Formatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

DPI = 120
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "x", "P")


#: A measured value with its spread over seeds: ``(mean, std)``, std None for a single run.
Spread = tuple[float, float | None]


def accuracy_per_round(series: Mapping[str, Sequence[tuple[int, float]]], path: Path, *, title: str,
                       bands: Mapping[str, Sequence[tuple[int, float, float]]] | None = None) -> Path:
    """One line per label: test accuracy (a fraction, drawn in %) after each round ``(round, accuracy)``; with
    ``bands``, a shaded band ``(round, low, high)`` around a label's line (the spread over seeds).

    A series with a single round (a variant run on a reduced round count) is drawn as a marker. Line styles and
    markers vary along with the colours, so series that coincide (Paillier's sums equal the plain ones up to
    quantization) stay visible on top of each other.
    """
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for index, (label, points) in enumerate(series.items()):
        if not points:
            continue
        rounds, accuracies = zip(*points, strict=True)
        [line] = axes.plot(rounds, [100 * accuracy for accuracy in accuracies], label=label,
                           linestyle=LINE_STYLES[index % len(LINE_STYLES)], marker=MARKERS[index % len(MARKERS)],
                           markersize=4.5, markerfacecolor="none")
        band = (bands or {}).get(label)
        if band:
            band_rounds, low, high = zip(*band, strict=True)
            axes.fill_between(band_rounds, [100 * value for value in low], [100 * value for value in high],
                              color=line.get_color(), alpha=0.12, linewidth=0)
    axes.set(xlabel="round", ylabel="test accuracy (%)", title=title)
    locator = axes.xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator)  # a new axes' AutoLocator
    locator.set_params(integer=True)
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize="small")
    return _save(figure, path)


def accuracy_vs_epsilon(curves: Mapping[str, Sequence[tuple[float, Spread]]], references: Mapping[str, Spread],
                        path: Path, *, baseline: str, title: str) -> Path:
    """Final test accuracy (in %) against ε: one line with error bars (± the spread) per DP curve, points
    ``(epsilon, (mean, std))`` (for instance central and distributed noise), and a horizontal line per setting
    without ε (``references``, ``baseline`` solid and first, the others dashed) with its spread shaded. ε on a
    log scale (privacy budgets are compared by factors); one legend."""
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    epsilons = [epsilon for points in curves.values() for epsilon, _ in points] or [1.0]
    low, high = min(epsilons) / 1.6, max(epsilons) * 1.6
    ordered = sorted(references.items(), key=lambda item: item[0] != baseline)
    for index, (label, (mean, std)) in enumerate(ordered):
        color = "black" if label == baseline else f"C{7 + index % 3}"
        axes.axhline(100 * mean, color=color, linewidth=1.2, linestyle="-" if label == baseline else "--",
                     label=f"{label} (no ε)", zorder=1)
        if std:
            axes.axhspan(100 * (mean - std), 100 * (mean + std), color=color, alpha=0.08, linewidth=0, zorder=0)
    for index, (label, points) in enumerate(curves.items()):
        ordered_points = sorted(points)
        axes.errorbar([epsilon for epsilon, _ in ordered_points], [100 * mean for _, (mean, _) in ordered_points],
                      yerr=[100 * (std or 0.0) for _, (_, std) in ordered_points], label=label, color=f"C{index}",
                      marker=MARKERS[index % len(MARKERS)], linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                      capsize=4, markersize=6, zorder=3)
    _log_x(axes, FuncFormatter(lambda value, _: f"{value:g}"), low, high)
    axes.margins(y=0.12)  # room between the reference lines and the frame
    axes.set(xlabel="ε spent (log scale; smaller = more private)", ylabel="final test accuracy (%)", title=title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small", loc="lower right")
    return _save(figure, path)


def gap_vs_overhead(points: Sequence[tuple[str, float, Spread]], path: Path, *, baseline: str) -> Path:
    """One labelled point per ``(label, time_ratio, (gap_points, std))``: what a privacy variant costs in time
    (wall time per round over the baseline's, log scale: overheads span orders of magnitude) against
    what it costs in accuracy (percentage points lost relative to the baseline, ± its spread over seeds)."""
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for label, ratio, (gap, std) in points:
        axes.errorbar([ratio], [gap], yerr=[std or 0.0], fmt="o", markersize=5, capsize=3)
        axes.annotate(label, (ratio, gap), textcoords="offset points", xytext=(5, 4), fontsize="small")
    ratios = [ratio for _, ratio, _ in points] or [1.0]
    # always show the 1× line, with room for the labels right of the points
    _log_x(axes, FuncFormatter(lambda value, _: f"{value:,g}×"), min(0.5, min(ratios) / 1.5),
           max(2.0, max(ratios) * 4))
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.axvline(1.0, color="grey", linewidth=0.8)
    axes.set(xlabel=f"wall time per round relative to {baseline} (log scale)",
             ylabel=f"accuracy lost vs {baseline} (points)", title="Accuracy cost versus time overhead")
    axes.grid(alpha=0.3, which="both")
    return _save(figure, path)


def bytes_per_round(bars: Sequence[tuple[str, float, float]], path: Path) -> Path:
    """Bytes uploaded and downloaded per round, one pair of horizontal bars per ``(label, up, down)``,
    on a log scale (ciphertexts can be orders of magnitude larger than plain floats)."""
    figure, axes = plt.subplots(figsize=(7.5, 0.9 + 0.55 * max(len(bars), 1)))
    height = 0.38
    for index, (_label, up, down) in enumerate(bars):
        axes.barh(index - height / 2, up, height, color="tab:orange", label="up" if index == 0 else None)
        axes.barh(index + height / 2, down, height, color="tab:blue", label="down" if index == 0 else None)
    axes.set_yticks(range(len(bars)), [label for label, _, _ in bars])
    axes.invert_yaxis()
    values = [value for _, up, down in bars for value in (up, down) if value > 0] or [1.0]
    # from a whole decade below, so bar lengths stay readable, to some room right of the longest bar
    _log_x(axes, EngFormatter(unit="B"), 10 ** math.floor(math.log10(min(values))), max(values) * 1.5)
    axes.set(xlabel="bytes per round (log scale)", title="Traffic per round")
    axes.grid(alpha=0.3, axis="x", which="both")
    if bars:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(figure, path)


def attack_success(curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path: Path, *,
                   title: str) -> Path:
    """One panel per attack kind, one line per setting: what the attack achieved ``(fraction of attackers,
    success)``, the backdoor's success in % or, for the other attacks, the accuracy lost in points."""
    kinds = sorted(curves)
    figure, panels = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds) + 2.5, 4.0), squeeze=False)
    for axes, kind in zip(panels[0], kinds, strict=True):
        for index, (label, points) in enumerate(sorted(curves[kind].items())):
            axes.plot([100 * fraction for fraction, _ in points], [value for _, value in points], label=label,
                      linestyle=LINE_STYLES[index % len(LINE_STYLES)], marker=MARKERS[index % len(MARKERS)])
        axes.set(xlabel="attackers (% of clients)", title=kind,
                 ylabel="backdoor success (%)" if kind == "backdoor" else "accuracy lost (points)")
        axes.grid(alpha=0.3)
    panels[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.suptitle(title, fontsize="medium")
    return _save(figure, path)


def _log_x(axes: Axes, formatter: Formatter, low: float, high: float) -> None:
    """A log-scale x axis from ``low`` to ``high`` labelled at powers of ten, and also at 2 and 5 times them
    when the range spans at most two decades (by default a short range gets an exponent at every minor tick)."""
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)))
    axes.xaxis.set_major_formatter(formatter)
    axes.xaxis.set_minor_formatter(NullFormatter())


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, bbox_inches="tight")  # "tight" keeps a legend placed outside the axes
    plt.close(figure)
    return path
