"""facegcn.train"""
