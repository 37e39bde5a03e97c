"""prunekit.measure"""
