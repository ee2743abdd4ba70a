"""facegcn.serve"""
