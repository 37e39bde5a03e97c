"""prunekit.criteria"""
