"""Federated dynamic sparse training on Flower (FedDST as in research note section 6, its quirks fixed).

    config.py     FederatedConfig (the `federated:` YAML section) and the loader that splits it off a RunConfig
    aggregate.py  the server's aggregation in NumPy: masked sample-weighted average, mask union / min_votes,
                  magnitude re-prune, dtypes kept
    comm.py       upload / download bits (FedDST's formulas)
    topology.py   initial random masks, per-round readjustment ratio, drop-by-magnitude / grow-by-gradient
    client.py     one client's round: local training with prunekit.train.loop.TrainingLoop on a SupernetState
    strategy.py   SparseFedAvg, a Flower message-API strategy around aggregate.py
    apps.py       the Flower ServerApp and ClientApp (the same objects run in simulation and deployment)
    runner.py     `prunekit federate`: validate, make the run directory, run Flower's simulation engine

Flower is an optional extra (`pip install -c constraints.txt "prunekit[federated]"`); only strategy.py, apps.py
and runner.py import it.
"""
