"""facegcn.refine"""
