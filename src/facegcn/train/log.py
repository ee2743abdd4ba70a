"""Run logging (rank 0 only): TensorBoard scalars + image grids when ``tensorboard`` is importable,
and always a JSON-lines log (``log.jsonl``) and PNG grids (``images/``) in the run folder."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import torch


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return False
    return True


def image_grid(columns: list[torch.Tensor]) -> torch.Tensor:
    """Columns of (B,3,H,W) images in [0,1] → one (3, B·H, n·W) grid (row = sample)."""
    rows = [torch.cat([c[i].detach().float().cpu().clamp(0, 1) for c in columns], dim=-1)
            for i in range(columns[0].shape[0])]
    return torch.cat(rows, dim=-2)


class RunLogger:
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
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float], **fields) -> None:
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
        if self.enabled:
            self._fh.write(json.dumps({"time": round(time.time(), 3), **fields}) + "\n")
            self._fh.flush()

    def images(self, tag: str, step: int, grid: torch.Tensor, name: str) -> Path | None:
        if not self.enabled:
            return None
        from PIL import Image

        from facegcn.io.atomic import atomic_write_bytes

        if self.tb is not None:
            self.tb.add_image(tag, grid, int(step))
            self.tb.flush()
        arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return atomic_write_bytes(self.run_dir / "images" / f"{name}.png", buf.getvalue())

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
