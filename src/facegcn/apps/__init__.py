"""User-facing applications built on facegcn.pipeline: batch, video, evaluate."""
