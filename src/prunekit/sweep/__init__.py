"""`prunekit sweep`: every combination of a grid as its own run directory (grid.py), run as subprocesses of
`prunekit train` / `prunekit federate` (runner.py), then sweep.csv, a markdown table and a PNG (table.py)."""
