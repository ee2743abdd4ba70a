"""facegcn.morphable"""
