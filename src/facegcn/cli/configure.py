"""The run's :class:`~facegcn.config.Config` from the pipeline options of a command, or from
``--config FILE`` (shared by batch, video and serve)."""

from __future__ import annotations

from pathlib import Path

from facegcn.cli import reconstruct
from facegcn.config import Config


def config_from_options(*, config_file: Path | None, model: str, detector: str, all_faces: bool,
                        checkpoint: str | None, refine: bool, fmt: str, texture_size: int, device: str,
                        quiet: bool, fast: bool) -> Config:
    """The run's Config: ``--config FILE`` (a config.json as written next to every output) wins over
    the individual model options; ``--quiet`` applies either way.

    Args:
        config_file: the ``--config`` file, or ``None`` to build from the other options.
        model, detector, all_faces, checkpoint, refine, fmt, texture_size, device, fast: the
            command's options of those names (``fmt`` is ``--format``, comma-separated).
        quiet: no progress bars.

    Returns:
        The validated Config.

    Raises:
        ConfigError: an unreadable or invalid config file, or an invalid option value.
    """
    if config_file is not None:
        cfg = Config.load(config_file)
        cfg.progress = not quiet
        return cfg.validate()
    # looked up on the module, so a replaced build_config (tests) applies to every command
    return reconstruct.build_config(model, detector, all_faces, checkpoint, refine, fmt, texture_size, device, quiet, fast)
