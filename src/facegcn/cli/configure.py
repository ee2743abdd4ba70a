"""The run's :class:`~facegcn.config.Config` from a command line: ``--config FILE`` values as the
defaults, the options typed on the command line over them; and the checks every pipeline
command makes before any slow work (the cache folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from facegcn.config import Config
from facegcn.errors import ConfigError

_ALWAYS = ("quiet",)  # applied over a --config file even when not typed
_BUILD_ARGS = {"fmt": "formats"}  # option name → build_config's argument, where they differ

#: the order options are applied in ("fast" last: over a file it sets the preset's step counts)
_ORDER = ("model", "detector", "all_faces", "checkpoint", "refine", "fmt", "texture_size", "texture", "delight", "device",
          "threads", "quiet", "fast")


def merged_config(config_file: str | os.PathLike | None, values: dict[str, Any], typed: set[str],
                  fixed: dict[str, Any] | None = None) -> Config:
    """The validated Config of one command line.

    Args:
        config_file: ``--config FILE`` (a ``config.json`` as written beside every output), or ``None``.
        values: the command's pipeline options (names of
            :data:`~facegcn.cli.options.PIPELINE_OPTIONS`) and their values.
        typed: the names among ``values`` that were typed on the command line.
        fixed: options applied last whatever the file or the command line say.

    Returns:
        Without a file: the ``"fast"`` (``--fast``) or ``"default"`` preset with every option of
        ``values``. With a file: its values (what it does not name keeps ``Config()``'s default),
        then the typed options only (``--fast`` sets the fast preset's step counts); ``--quiet``
        (progress bars) applies either way.

    Raises:
        ConfigError: an unreadable or invalid file, or an invalid value.
    """
    from facegcn.cli.options import apply_options

    fixed = fixed or {}
    if config_file is not None:
        cfg = Config.load(config_file)
        # typed options only; --quiet always (progress bars are this terminal's business, not a setting)
        names = [n for n in _ORDER if n in values and (n in typed or n in _ALWAYS)]
        apply_options(cfg, values, names)
    else:
        # looked up on the module, so a replaced build_config (tests) applies to every command
        from facegcn.cli import reconstruct

        kw = {_BUILD_ARGS.get(n, n): values[n] for n in _ORDER if n in values}
        cfg = reconstruct.build_config(**kw)
    apply_options(cfg, fixed, [n for n in _ORDER if n in fixed])
    try:
        return cfg.validate()
    except ConfigError as exc:
        where = f" (in {config_file})" if config_file is not None else ""
        raise ConfigError(f"{exc}{where}") from None


def check_cache() -> Path:
    """The cache folder (``FACEGCN_CACHE``, default ``~/.cache/facegcn``), created and writable.

    Raises:
        ConfigError: it cannot be created or written (the message names the variable).
    """
    from facegcn.cache import cache_dir

    where = cache_dir(create=False)
    what = f"FACEGCN_CACHE={os.environ['FACEGCN_CACHE']}" if os.environ.get("FACEGCN_CACHE") else f"cache folder {where}"
    try:
        where = cache_dir(create=True)
    except OSError as exc:
        raise ConfigError(f"cannot use the {what}: cannot create {exc.filename or where} "
                          f"({exc.strerror or exc}); set FACEGCN_CACHE to a writable folder") from None
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot use the {what}: {where} is not a writable folder; "
                          "set FACEGCN_CACHE to a writable folder")
    return where


def save_config(cfg: Config, folder: str | os.PathLike) -> Path:
    """Write ``cfg`` as ``folder/config.json`` (atomically), the merged settings of a run."""
    from facegcn.io.atomic import atomic_write_text

    return atomic_write_text(Path(folder) / "config.json", cfg.to_json())
