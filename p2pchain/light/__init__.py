"""An embeddable light client: `async with open_light_client(config) as client`.

It connects to full nodes over the peer protocol, follows finality from a trusted checkpoint
with `FinalityCertificate`s and reads balances, outputs, assets, the stake table and
transaction inclusion from proofs, checked against the finalized headers it verified
(`p2pchain.consensus.light.LightState`). It keeps no chain and no state: a few hundred bytes per
finalized block, and each answer costs what its proof weighs (docs/light-client.md).
"""

from p2pchain.errors import NoHonestPeer as NoHonestPeer
from p2pchain.light.client import LightClient as LightClient
from p2pchain.light.client import LightConfig as LightConfig
from p2pchain.light.client import open_light_client as open_light_client
