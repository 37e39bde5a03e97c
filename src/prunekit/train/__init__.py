"""prunekit.train"""
