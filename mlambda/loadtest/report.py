"""The report folder: per phase, a PNG of latency percentiles and throughput over time and
a PNG of the latency histogram; figures.json with every figure and verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt


def timeline(fig: dict[str, Any], path: Path) -> None:
    rows = fig["per_second"]
    t = [r["t"] for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for key, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        top.plot([r["t"] for r in rows if key in r], [r[key] for r in rows if key in r],
                 style, label=key)
    top.set_ylabel("latency (ms)")
    top.set_title(f"{fig['phase']}: {fig['concurrency']} connections ({fig['generator']})")
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bottom.bar(t, [r["answers"] for r in rows], width=0.9, label="answers")
    bottom.bar(t, [r["wrong"] for r in rows], width=0.9, color="red", label="wrong")
    bottom.set_ylabel("answers per second")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def histogram(fig: dict[str, Any], path: Path) -> None:
    edges = fig["histogram_ms"]["edges"]
    counts = fig["histogram_ms"]["counts"]
    figure, ax = plt.subplots(figsize=(9, 4))
    if counts:
        ax.stairs(counts, edges, fill=True)
    for key, color in (("p50", "green"), ("p99", "red")):
        value = fig["latency_ms"].get(key)
        if value is not None and value == value:  # not NaN
            ax.axvline(value, color=color, linestyle="--", label=f"{key} {value:.1f} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("answers")
    ax.set_title(f"{fig['phase']}: latency of {fig['answers']:,} answers")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(folder: Path, document: dict[str, Any]) -> list[Path]:
    """Write figures.json and the PNGs of each phase; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in document["phases"]:
        name = fig["phase"].replace(" ", "-")
        for kind, draw in (("timeline", timeline), ("histogram", histogram)):
            path = folder / f"{name}-{kind}.png"
            draw(fig, path)
            written.append(path)
    path = folder / "figures.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    written.append(path)
    return written
