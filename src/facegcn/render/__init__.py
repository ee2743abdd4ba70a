"""facegcn.render: camera, rasterizer, interpolation, SH shading, sampling (CPU numba / any-device torch).

Typical use::

    from facegcn.render import Renderer, rigid_transform, sh_shading, vertex_normals
    v = rigid_transform(shape, angles, trans)                  # (B, V, 3) world
    n = vertex_normals(v, faces)                               # rotated normals
    col = sh_shading(n, albedo, sh)                            # (B, V, 3), sh (B, 27)
    out = Renderer(faces=faces)(v, col)                        # Rendering(image, mask, ...)

Conventions (pixel centres at integer coordinates, no back-face culling, SH layout R|G|B x 9 with
Deep3DFaceRecon's constants and ambient init) are documented in :mod:`.camera`,
:mod:`.rasterize` and :mod:`.shading`. UV baking (vertex colours / photo → texture, texture →
vertex colours; the texel ↔ UV convention) is :mod:`.bake` and :mod:`.bake_photo`.
"""

from facegcn.render._parallel import get_num_threads, set_num_threads
from facegcn.render.bake import (
    bake_vertex_colors,
    fill_gutter,
    rasterize_uv,
    sample_texture_at_vertices,
    uv_to_pixel,
)
from facegcn.render.bake_photo import bake_from_photo
from facegcn.render.camera import PerspectiveCamera, rigid_transform, rotation_matrix
from facegcn.render.interpolate import antialias, interpolate
from facegcn.render.rasterize import (
    Fragments,
    face_adjacency,
    face_front_facing,
    rasterize,
    vertex_visibility,
)
from facegcn.render.renderer import Renderer, Rendering
from facegcn.render.sampling import sample_image, sample_texture
from facegcn.render.shading import (
    DEFAULT_SH_INIT,
    SH_A,
    SH_C,
    face_normals,
    sh_basis,
    sh_irradiance,
    sh_shading,
    vertex_normals,
)

__all__ = [
    "PerspectiveCamera",
    "rotation_matrix",
    "rigid_transform",
    "Fragments",
    "rasterize",
    "vertex_visibility",
    "face_front_facing",
    "face_adjacency",
    "interpolate",
    "antialias",
    "Renderer",
    "Rendering",
    "sample_image",
    "sample_texture",
    "DEFAULT_SH_INIT",
    "SH_A",
    "SH_C",
    "sh_basis",
    "sh_irradiance",
    "sh_shading",
    "face_normals",
    "vertex_normals",
    "get_num_threads",
    "set_num_threads",
    "bake_from_photo",
    "bake_vertex_colors",
    "fill_gutter",
    "rasterize_uv",
    "sample_texture_at_vertices",
    "uv_to_pixel",
]
