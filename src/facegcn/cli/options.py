"""Typer options shared by the commands that run the pipeline (reconstruct, batch, video,
evaluate, serve): one definition each, so names, defaults and help stay in step; and
:func:`register_command`, how every command module adds itself to an application.

Options whose help differs by command (``--refine``, ``--fast``, ``--quiet``, ``--all-faces``) stay
with their command."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import typer

MODEL_HELP = "'ict' (embedded default) or the path of a BFM_model_front.mat."

MODEL = typer.Option("ict", "--model", "-m", help=MODEL_HELP)
DETECTOR = typer.Option("dlib", help="Face detector: dlib or mtcnn.")
CHECKPOINT = typer.Option(None, "--checkpoint", help="Trained weights (.safetensors); default: per-image fitting.")
FORMAT = typer.Option("obj,ply,glb", "--format", help="Comma-separated mesh formats: obj, ply, glb.")
TEXTURE_SIZE = typer.Option(1024, help="UV texture size in pixels.")
DEVICE = typer.Option("cpu", help="cpu or cuda.")
CONFIG_FILE: Path = typer.Option(
    None, "--config", help="A config.json (as written next to outputs); overrides the model options below.")


def register_command(app: typer.Typer, command: Callable, name: str) -> None:
    """Add ``command`` to ``app`` as ``name`` unless a command of that name is there already.

    Args:
        app: the typer application.
        command: the command function (its signature declares the options).
        name: the sub-command's name on the command line.
    """
    if any((c.name or getattr(c.callback, "__name__", None)) == name for c in app.registered_commands):
        return
    app.command(name)(command)
