"""facegcn.render"""
