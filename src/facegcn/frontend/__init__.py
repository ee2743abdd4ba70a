"""facegcn.frontend"""
