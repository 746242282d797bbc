"""One type per quantity, so that a slot is never passed where a height is expected."""

from __future__ import annotations

from typing import NewType

Hash32 = NewType("Hash32", bytes)
TxId = NewType("TxId", bytes)
BlockId = NewType("BlockId", bytes)
AssetId = NewType("AssetId", bytes)
Address = NewType("Address", bytes)
PublicKey = NewType("PublicKey", bytes)
"""32-byte x-only secp256k1 key (BIP-340)."""
Amount = NewType("Amount", int)
Height = NewType("Height", int)
Slot = NewType("Slot", int)
Epoch = NewType("Epoch", int)
