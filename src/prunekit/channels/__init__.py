"""prunekit.channels"""
