"""facegcn.io: image loading, mesh/texture export, atomic writes. Knows nothing about models."""

from facegcn.io.atomic import atomic_open, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]
