"""p2pchain: a proof-of-stake UTXO value-transfer chain with a trio gossip network."""

__version__ = "0.1.0"

__all__ = ["__version__"]
