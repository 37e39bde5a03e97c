"""prunekit.models"""
