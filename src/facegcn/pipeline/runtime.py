"""The one place that turns a :class:`~facegcn.config.Config` into process settings (threads, device)."""

from __future__ import annotations

import torch

from facegcn.config import Config
from facegcn.errors import ConfigError
from facegcn.render import get_num_threads, set_num_threads


def set_threads(n: int) -> tuple[int, int]:
    """Set torch's and the rasterizer's CPU thread count to ``n`` (0 = leave them as they are).

    Returns:
        the previous ``(torch, rasterizer)`` counts, to restore with :func:`restore_threads`.
    """
    old = (torch.get_num_threads(), get_num_threads())
    if n:
        torch.set_num_threads(n)
        set_num_threads(n)
    return old


def restore_threads(old: tuple[int, int]) -> None:
    """Undo :func:`set_threads` (``old`` is what it returned)."""
    torch.set_num_threads(old[0])
    set_num_threads(old[1])


def apply_runtime(cfg: Config) -> torch.device:
    """Set torch's and the rasterizer's CPU thread count from ``cfg.threads`` (0 = leave torch's
    default) and check that ``cfg.device`` exists.

    Returns:
        the ``torch.device`` every stage should put its tensors on.
    """
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but CUDA is not available")
    set_threads(cfg.threads)
    return torch.device(cfg.device)
