"""prunekit.methods"""
