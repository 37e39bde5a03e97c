"""prunekit.weights"""
