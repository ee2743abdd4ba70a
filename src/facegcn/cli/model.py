"""`facegcn model ...`: inspect, sample and convert morphable models. Register on a typer app with
:func:`register` (a ``model`` sub-application).

The morphable-model, mesh and graph modules are imported inside the commands: they import torch,
which takes seconds and which ``facegcn --help`` must not wait for.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from facegcn.cli.options import Command, Group
from facegcn.errors import ConfigError

app = typer.Typer(help="Inspect, sample and convert morphable models.", no_args_is_help=True, cls=Group)

MODEL_HELP = "'ict' (embedded default) or the path of a BFM_model_front.mat / ICT-format .npz."


@app.command(cls=Command)
def info(
    model: str = typer.Option("ict", "--model", "-m", help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print vertex, triangle, component and landmark counts."""
    from facegcn.morphable import load_model

    s = load_model(model).summary()
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    for k, v in s.items():
        typer.echo(f"{k:>22}: {v}")


@app.command(cls=Command)
def sample(
    out: Path = typer.Option(Path("out/samples"), "-o", "--out", help="Output folder."),
    model: str = typer.Option("ict", "--model", "-m", help=MODEL_HELP),
    n: int = typer.Option(4, "-n", help="Number of random faces.", min=1, max=1000),
    seed: int = typer.Option(0, help="Random seed."),
    expression_scale: float = typer.Option(0.3, help="Std of expression coefficients (0 = neutral)."),
    fmt: str = typer.Option("obj,ply", "--format", help="Comma-separated: obj, ply, glb."),
) -> None:
    """Write random identities/expressions (with random albedo) as mesh files, in metres (as
    `facegcn reconstruct` writes them)."""
    import torch

    from facegcn.io.atomic import check_writable_folder
    from facegcn.io.mesh import write_glb, write_obj, write_ply
    from facegcn.morphable import load_model
    from facegcn.pipeline.export import EXPORT_SCALE

    formats = _formats(fmt)
    check_writable_folder(out)
    m = load_model(model)
    g = torch.Generator().manual_seed(seed)
    L = m.layout
    ids = torch.randn(n, L.id, generator=g)
    exps = torch.randn(n, L.exp, generator=g) * expression_scale
    if m.name == "ict":  # ARKit blendshape weights live in [0, 1]
        exps = exps.abs().clamp(0, 1)
    tex = torch.randn(n, L.tex, generator=g) * 0.7
    with torch.no_grad():
        verts = m.shape(ids, exps) * EXPORT_SCALE  # model decimetres → metres
        cols = m.albedo(tex).clamp(0, 1)
        normals = m.vertex_normals(verts)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = out / f"sample_{i:03d}"
        if "obj" in formats:
            write_obj(stem.with_suffix(".obj"), verts[i], m.faces, vertex_colors=cols[i])
        if "ply" in formats:
            write_ply(stem.with_suffix(".ply"), verts[i], m.faces, vertex_colors=cols[i], normals=normals[i])
        if "glb" in formats:
            write_glb(stem.with_suffix(".glb"), verts[i], m.faces, vertex_colors=cols[i])
    typer.echo(f"wrote {n} sample(s) to {out}")


@app.command("convert-bfm", cls=Command)
def convert_bfm_cmd(
    bfm_dir: Path = typer.Argument(..., help="Folder with 01_MorphableModel.mat, Exp_Pca.bin, std_exp.txt, "
                                   "BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat."),
    out: Path = typer.Option(None, "-o", "--out", help="Output .mat (default BFM_DIR/BFM_model_front.mat)."),
) -> None:
    """Convert the raw Basel Face Model 2009 + expression basis to BFM_model_front.mat."""
    from facegcn.morphable import load_model
    from facegcn.morphable.bfm import convert_bfm

    path = convert_bfm(bfm_dir, out)
    s = load_model(path).summary()
    typer.echo(f"wrote {path}: {s['vertices']} vertices, {s['triangles']} triangles")


def _formats(fmt: str) -> set[str]:
    formats = {f.strip().lower() for f in fmt.split(",") if f.strip()}
    bad = formats - {"obj", "ply", "glb"}
    if not formats:
        raise ConfigError("--format needs at least one of obj, ply, glb")
    if bad:
        raise ConfigError(f"unknown format(s) {', '.join(sorted(bad))}; choose from obj, ply, glb")
    return formats


@app.command(cls=Command)
def hierarchy(
    model: str = typer.Option("ict", "--model", "-m", help=MODEL_HELP),
    factors: str = typer.Option("4,4,4,4", help="Down-sampling factor per level."),
    rebuild: bool = typer.Option(False, help="Ignore the cache and rebuild."),
) -> None:
    """Build (or load from the cache) the CoMA mesh hierarchy of a model and report it."""
    from facegcn.graph import build_hierarchy, hierarchy_report
    from facegcn.morphable import load_model

    try:
        f = tuple(int(x) for x in factors.split(","))
    except ValueError:
        raise ConfigError(f"--factors must be comma-separated integers, got {factors!r}") from None
    m = load_model(model)
    h = build_hierarchy(m.mean_shape, m.faces, f, rebuild=rebuild)
    typer.echo(hierarchy_report(h))


def register(parent: typer.Typer) -> None:
    """Add the ``model`` sub-application to ``parent`` (idempotent)."""
    if any(g.typer_instance is app for g in parent.registered_groups):
        return
    parent.add_typer(app, name="model")
