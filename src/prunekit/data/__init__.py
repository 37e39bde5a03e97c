"""prunekit.data"""
