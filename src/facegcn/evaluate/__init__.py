"""facegcn.evaluate"""
