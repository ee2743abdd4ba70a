"""facegcn.graph"""
