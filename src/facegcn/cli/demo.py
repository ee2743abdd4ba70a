"""The README's demo."""

from __future__ import annotations

from pathlib import Path

import torch


def run_demo(out: str | Path) -> Path:
    """Until the reconstruction stages land: export the embedded model's mean face."""
    from facegcn.io.mesh import write_glb, write_obj, write_ply
    from facegcn.morphable import load_model

    out = Path(out)
    m = load_model("ict")
    with torch.no_grad():
        v = m.mean_shape
        col = m.mean_albedo.clamp(0, 1)
        n = m.vertex_normals(v[None])[0]
    write_obj(out / "mean_face.obj", v, m.faces, vertex_colors=col)
    write_ply(out / "mean_face.ply", v, m.faces, vertex_colors=col, normals=n)
    write_glb(out / "mean_face.glb", v, m.faces, vertex_colors=col)
    print(f"wrote {out}/mean_face.obj, .ply, .glb ({m.n_vertices} vertices, {m.n_faces} triangles)")
    return out
