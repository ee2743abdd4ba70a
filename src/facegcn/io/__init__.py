"""facegcn.io: image loading, mesh/texture export, atomic writes. Knows nothing about models."""

from facegcn.io.atomic import atomic_open, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]
from facegcn.io.mesh import MeshData, read_glb, read_obj, read_ply, write_glb, write_obj, write_ply  # noqa: E402

__all__ += ["MeshData", "read_glb", "read_obj", "read_ply", "write_glb", "write_obj", "write_ply"]
from facegcn.io.image import Photo, load_image  # noqa: E402

__all__ += ["Photo", "load_image"]
