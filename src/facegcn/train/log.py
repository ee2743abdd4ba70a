"""Run logging (rank 0 only): TensorBoard scalars + image grids when ``tensorboard`` is importable,
and always a JSON-lines log (``log.jsonl``) and PNG grids (``images/``) in the run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from facegcn.io.imageops import image_to_uint8, write_png

__all__ = ["RunLogger", "image_grid", "tensorboard_available"]


def tensorboard_available() -> bool:
    """Whether TensorBoard logging works here (``tensorboard`` is an optional dependency)."""
    try:  # optional dependency: imported only to probe it
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return False
    return True


def image_grid(columns: list[torch.Tensor]) -> torch.Tensor:
    """Tile columns of image batches into one picture (row = sample, column = kind of image).

    Args:
        columns: ``n`` batches of the same shape, e.g. ``[photo, render, composite]``.

    Returns:
        The grid, clamped to ``[0, 1]``.

    Shapes:
        columns: each ``(B, 3, H, W)`` float, any device → ``(3, B·H, n·W)`` float32, CPU.
    """
    rows = [torch.cat([c[i].detach().float().cpu().clamp(0, 1) for c in columns], dim=-1)
            for i in range(columns[0].shape[0])]
    return torch.cat(rows, dim=-2)


class RunLogger:
    """Where a run's scalars, events and image grids go.

    Args:
        run_dir: the run folder (``log.jsonl``, ``images/``, ``tb/``).
        enabled: ``False`` on ranks other than 0: every method does nothing.
        tensorboard: write TensorBoard events; default: when :func:`tensorboard_available`.
        purge_step: TensorBoard drops logged events from this step on (a resumed run).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool | None = None,
                 purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.tb = None
        self._fh = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.run_dir / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        use_tb = tensorboard_available() if tensorboard is None else tensorboard
        if use_tb:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency (tensorboard)

            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float], **fields) -> None:
        """One ``log.jsonl`` record ``{time, step, **fields, **values}`` (+ TensorBoard scalars
        tagged ``<fields["stage"]>/<name>``)."""
        if not self.enabled:
            return
        rec = {"time": round(time.time(), 3), "step": int(step), **fields,
               **{k: float(v) for k, v in values.items()}}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        if self.tb is not None:
            prefix = fields.get("stage", "")
            for k, v in values.items():
                self.tb.add_scalar(f"{prefix}/{k}" if prefix else k, float(v), int(step))

    def event(self, **fields) -> None:
        """One ``log.jsonl`` record ``{time, **fields}`` (resume, stage_done, stopped ...)."""
        if self.enabled:
            self._fh.write(json.dumps({"time": round(time.time(), 3), **fields}) + "\n")
            self._fh.flush()

    def images(self, tag: str, step: int, grid: torch.Tensor, name: str) -> Path | None:
        """Write an image grid as ``images/<name>.png`` (+ TensorBoard image ``tag``).

        Args:
            tag, step: the TensorBoard tag and step.
            grid: ``(3, H, W)`` float in ``[0, 1]`` (:func:`image_grid`).
            name: the PNG's file name without extension.

        Returns:
            The PNG's path, or ``None`` when disabled.
        """
        if not self.enabled:
            return None
        if self.tb is not None:
            self.tb.add_image(tag, grid, int(step))
            self.tb.flush()
        return write_png(self.run_dir / "images" / f"{name}.png", image_to_uint8(grid))

    def flush(self) -> None:
        """Flush TensorBoard (the JSON log is flushed after every record)."""
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        """Close the log file and the TensorBoard writer (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
