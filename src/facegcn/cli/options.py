"""The options shared by the commands that run the pipeline (reconstruct, demo, batch, video,
evaluate, serve), defined once, and how every command module adds itself to an application.

* :data:`PIPELINE_OPTIONS`: name, default, help and target in the :class:`~facegcn.config.Config`
  of each shared option (``--config``, ``--model``, ``--detector``, ``--all-faces``,
  ``--checkpoint``, ``--refine/--no-refine``, ``--format``, ``--texture-size``, ``--texture``,
  ``--device``, ``--threads``, ``--fast``, ``--quiet``). Defaults come from ``Config()``, the one
  place that declares them.
* :func:`pipeline_options`: a decorator that adds a chosen subset of them to a command's
  signature; the command receives them as one :class:`PipelineOptions` (``pipeline=``), which
  knows which flags were typed on the command line and builds the run's configuration
  (:meth:`PipelineOptions.config`: ``--config FILE`` gives the defaults, typed flags override).
* :func:`register_command`: adds a command (with :class:`Command`, whose help shows no ``<bool>``
  type for flags) unless one of that name is registered already.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from facegcn.config import Config

MODEL_HELP = "'ict' (embedded default) or the path of a BFM_model_front.mat."
_DEFAULT = Config()


def _no_type(ctx=None) -> None:
    return None


class _FlagsWithoutType:
    """Help lists flags (``--fast``, ``--refine/--no-refine``, ``--help``) without a ``<bool>``
    type: they take no value (``--all-faces true`` is an error, not a setting)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False):
                p.display_type_rich = _no_type
        return params


class Command(_FlagsWithoutType, TyperCommand):
    """A typer command whose help shows no ``<bool>`` type for flags."""


class Group(_FlagsWithoutType, TyperGroup):
    """A typer group (``facegcn``, ``facegcn model``) whose help shows no ``<bool>`` type for flags."""


@dataclass(frozen=True)
class OptionSpec:
    """One shared option: its parameter type, typer declaration and default help text."""

    annotation: Any
    default: Any
    decls: tuple[str, ...]
    help: str
    extra: dict = field(default_factory=dict)

    def make(self, help: str | None = None) -> Any:
        """A fresh ``typer.Option`` (each command gets its own, with its own help text)."""
        return typer.Option(self.default, *self.decls, help=help or self.help, **self.extra)


PIPELINE_OPTIONS: dict[str, OptionSpec] = {
    "config_file": OptionSpec(Optional[Path], None, ("--config",),
                              "A config.json (as written next to every output): its values are the defaults, "
                              "options typed on the command line override them."),
    "model": OptionSpec(str, _DEFAULT.model, ("--model", "-m"), MODEL_HELP),
    "detector": OptionSpec(str, _DEFAULT.frontend.detector, ("--detector",), "Face detector: cascade (dlib, then BlazeFace and MTCNN for faces it misses), dlib or mtcnn."),
    "all_faces": OptionSpec(bool, _DEFAULT.frontend.all_faces, ("--all-faces",),
                            "Reconstruct every face (OUT/<photo>/face_<i>/), not only the best one."),
    "checkpoint": OptionSpec(Optional[str], _DEFAULT.checkpoint, ("--checkpoint",),
                             "Trained weights (.safetensors or a training run folder); default: per-image fitting."),
    "refine": OptionSpec(bool, _DEFAULT.refine.enabled, ("--refine/--no-refine",), "GCN texture refinement."),
    "fmt": OptionSpec(str, ",".join(_DEFAULT.output.formats), ("--format",),
                      "Comma-separated mesh formats: obj, ply, glb."),
    "texture_size": OptionSpec(int, _DEFAULT.output.texture_size, ("--texture-size",), "UV texture size in pixels (16 to 8192)."),
    "texture": OptionSpec(str, _DEFAULT.output.texture, ("--texture",),
                          "Texture: albedo (de-lit photo detail, default), lit (as photographed) or gcn "
                          "(the GCN's per-vertex albedo only)."),
    "delight": OptionSpec(float, _DEFAULT.output.delight, ("--delight",),
                          "Share of the fitted shading the albedo texture removes: 1 = all (a pure albedo, "
                          "for relighting), 0 = none; the default keeps half, which reads as the person "
                          "in an unlit viewer."),
    "device": OptionSpec(str, _DEFAULT.device, ("--device",), "cpu or cuda (cuda:N for the N-th GPU)."),
    "threads": OptionSpec(int, _DEFAULT.threads, ("--threads",),
                          "CPU threads (0 = torch's default); 1 is fastest on small or shared CPUs."),
    "fast": OptionSpec(bool, False, ("--fast",), "Fewer optimisation steps (preview quality)."),
    "quiet": OptionSpec(bool, False, ("--quiet", "-q"), "No progress bars."),
}

_FAST = Config.preset("fast")


def _set_formats(cfg: Config, text: str) -> None:
    cfg.output.formats = tuple(f.strip().lower() for f in str(text).split(",") if f.strip())


def _set_fast(cfg: Config, fast: bool) -> None:
    if fast:  # the "fast" preset's step counts, over whatever the file said
        for name in ("steps_rigid", "steps_landmark", "steps_photo", "steps_identity"):
            setattr(cfg.coarse, name, getattr(_FAST.coarse, name))
        cfg.refine.steps = _FAST.refine.steps


#: how each option's value lands in the configuration
_APPLY: dict[str, Callable[[Config, Any], None]] = {
    "model": lambda c, v: setattr(c, "model", v),
    "detector": lambda c, v: setattr(c.frontend, "detector", v),
    "all_faces": lambda c, v: setattr(c.frontend, "all_faces", v),
    "checkpoint": lambda c, v: setattr(c, "checkpoint", v),
    "refine": lambda c, v: setattr(c.refine, "enabled", v),
    "fmt": _set_formats,
    "texture_size": lambda c, v: setattr(c.output, "texture_size", v),
    "texture": lambda c, v: setattr(c.output, "texture", v),
    "delight": lambda c, v: setattr(c.output, "delight", v),
    "device": lambda c, v: setattr(c, "device", v),
    "threads": lambda c, v: setattr(c, "threads", v),
    "fast": _set_fast,
    "quiet": lambda c, v: setattr(c, "progress", not v),
}


@dataclass
class PipelineOptions:
    """The shared pipeline options of one command line.

    Attributes:
        values: ``{name: value}`` of the options the command declares (see :data:`PIPELINE_OPTIONS`).
        typed: the names whose value came from the command line (or the environment), not a default.
    """

    values: dict[str, Any]
    typed: set[str] = field(default_factory=set)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def config(self, **fixed: Any) -> Config:
        """The run's validated :class:`~facegcn.config.Config`.

        Without ``--config``: the ``"fast"`` or ``"default"`` preset with every option applied.
        With ``--config FILE``: the file's values (options it does not name keep ``Config()``'s
        defaults), then only the options typed on the command line. ``fixed`` values (option
        name → value) always apply, e.g. a command that needs every mesh format.

        Raises:
            ConfigError: an unreadable or invalid config file, or an invalid option value.
        """
        from facegcn.cli.configure import merged_config  # the one place that merges

        return merged_config(self.values.get("config_file"), self.values, self.typed, fixed)


def apply_options(cfg: Config, values: dict[str, Any], names) -> Config:
    """Apply the options ``names`` of ``values`` to ``cfg`` (in place); returns ``cfg``."""
    for name in names:
        if name in _APPLY and name in values:
            _APPLY[name](cfg, values[name])
    return cfg


def _typed(ctx: typer.Context, name: str) -> bool:
    # by name: typer vendors its own click, whose ParameterSource is not click's
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")


def pipeline_options(*names: str, help: dict[str, str] | None = None) -> Callable[[Callable], Callable]:
    """Add the shared options ``names`` (keys of :data:`PIPELINE_OPTIONS`) to a command.

    The decorated function takes a ``pipeline: PipelineOptions`` keyword argument instead of the
    individual options; ``help`` replaces an option's help text for this command.
    """
    unknown = set(names) - set(PIPELINE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown pipeline options {sorted(unknown)}")
    help = help or {}

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for n, p in sig.parameters.items() if n != "pipeline"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=PIPELINE_OPTIONS[n].make(help.get(n)),
                                   annotation=PIPELINE_OPTIONS[n].annotation) for n in names]
        ctx_param = inspect.Parameter("_typer_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(fn)
        def command(*args, **kwargs):
            ctx = kwargs.pop("_typer_ctx")
            values = {n: kwargs.pop(n) for n in names}
            typed = {n for n in names if _typed(ctx, n)}
            return fn(*args, pipeline=PipelineOptions(values, typed), **kwargs)

        command.__signature__ = sig.replace(parameters=[*own, *added, ctx_param])  # type: ignore[attr-defined]
        ann = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != "pipeline"}
        ann.update({p.name: p.annotation for p in added})
        ann["_typer_ctx"] = typer.Context
        command.__annotations__ = ann
        return command

    return decorate


def register_command(app: typer.Typer, command: Callable, name: str) -> None:
    """Add ``command`` to ``app`` as ``name`` unless a command of that name is there already.

    Args:
        app: the typer application.
        command: the command function (its signature declares the options).
        name: the sub-command's name on the command line.
    """
    if any((c.name or getattr(c.callback, "__name__", None)) == name for c in app.registered_commands):
        return
    app.command(name, cls=Command)(command)
