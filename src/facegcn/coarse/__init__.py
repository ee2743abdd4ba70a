"""facegcn.coarse"""
