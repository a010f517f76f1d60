"""The training curve saved with the model: the numbers (JSON) and a picture (PNG)."""

from __future__ import annotations

import json
import os
from typing import Any

CURVE_JSON = "training_curve.json"
CURVE_PNG = "training_curve.png"
_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm")


def curve_points(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one point per logged step: step, epoch and whichever of loss/eval_loss/lr/grad_norm."""
    points: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        values = {k: entry[k] for k in _KEYS if k in entry}
        if values:
            point = points.setdefault(entry["step"], {"step": entry["step"]})
            point.update(values, epoch=entry.get("epoch"))
    return [points[s] for s in sorted(points)]


def write_training_curve(log_history: list[dict[str, Any]], run_dir: str) -> list[str]:
    """Write training_curve.json and .png into `run_dir`; return the paths written."""
    points = curve_points(log_history)
    json_path = os.path.join(run_dir, CURVE_JSON)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump({"points": points}, f, indent=2)
        f.write("\n")
    png_path = os.path.join(run_dir, CURVE_PNG)
    _plot(points, png_path)
    return [json_path, png_path]


def _plot(points: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for key, label in (("loss", "train loss"), ("eval_loss", "validation loss")):
        xs = [p["step"] for p in points if key in p]
        if xs:
            ax_loss.plot(xs, [p[key] for p in points if key in p], marker=".", label=label)
    ax_loss.set_ylabel("loss")
    ax_loss.legend(loc="upper right")
    ax_loss.grid(alpha=0.3)
    xs = [p["step"] for p in points if "learning_rate" in p]
    ax_lr.plot(xs, [p["learning_rate"] for p in points if "learning_rate" in p], color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
