"""What a user sees while a run trains: a bar on a terminal, one line per log step otherwise.

Both go to stderr (stdout belongs to `roleforge train --json`) and show step, loss,
learning rate, tokens/s and the time left. Only rank 0 reports.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class LogLine:
    """The numbers of one log step, as the bar's postfix or one stderr line."""

    step: int
    max_steps: int
    loss: float | None
    learning_rate: float | None
    tokens_per_second: float | None
    eta_seconds: float | None
    eval_loss: float | None = None

    def fields(self) -> dict[str, str]:
        out = {}
        if self.loss is not None:
            out["loss"] = f"{self.loss:.4f}"
        if self.eval_loss is not None:
            out["eval_loss"] = f"{self.eval_loss:.4f}"
        if self.learning_rate is not None:
            out["lr"] = f"{self.learning_rate:.2e}"
        if self.tokens_per_second is not None:
            out["tok/s"] = f"{self.tokens_per_second:,.0f}"
        return out

    def text(self) -> str:
        parts = [f"step {self.step}/{self.max_steps}"]
        parts += [f"{k} {v}" for k, v in self.fields().items()]
        parts.append(f"eta {_eta(self.eta_seconds)}")
        return "  ".join(parts)


def progress_callback(mode: str, step_times: Any, stream: TextIO | None = None):
    """Return a TrainerCallback reporting progress (`mode`: auto, bar, lines, none), or None."""
    from transformers import TrainerCallback

    stream = stream or sys.stderr
    if mode == "none":
        return None
    if mode == "auto":
        mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"

    class TrainProgress(TrainerCallback):
        def __init__(self):
            self.bar = None
            self.started = 0.0
            self.first_step = 0
            self.last = (0, 0.0)  # tokens and step seconds at the previous log

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.started = time.perf_counter()
            self.first_step = state.global_step
            if mode == "bar":
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=state.max_steps,
                    initial=state.global_step,
                    desc="train",
                    unit="step",
                    file=stream,
                    dynamic_ncols=True,
                )

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if "loss" not in logs and "eval_loss" not in logs:
                return  # the end-of-training summary; the CLI prints its own
            line = self._line(state, logs)
            if self.bar is not None:
                self.bar.set_postfix(line.fields(), refresh=True)
            else:
                stream.write(line.text() + "\n")
                stream.flush()

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        def _line(self, state, logs) -> LogLine:
            tokens, seconds = step_times.tokens, step_times.step_seconds
            d_tokens, d_seconds = tokens - self.last[0], seconds - self.last[1]
            self.last = (tokens, seconds)
            done = state.global_step - self.first_step
            elapsed = time.perf_counter() - self.started
            eta = elapsed / done * (state.max_steps - state.global_step) if done else None
            return LogLine(
                step=state.global_step,
                max_steps=state.max_steps,
                loss=logs.get("loss"),
                learning_rate=logs.get("learning_rate"),
                tokens_per_second=d_tokens / d_seconds if d_seconds > 0 else None,
                eta_seconds=eta,
                eval_loss=logs.get("eval_loss"),
            )

    return TrainProgress()
