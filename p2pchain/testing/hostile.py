"""Ingredients of hostile peers: inputs that honest code never produces.

Tests of the wire (tests/robustness) and fuzzers build attacks from these; the library never
imports them.
"""

from __future__ import annotations

from typing import Final

_P: Final = 2**255 - 19
_SMALL_ORDER_X: Final = (
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
    _P,
    _P + 1,
)

LOW_ORDER_POINTS: Final[tuple[bytes, ...]] = tuple(
    (x + high).to_bytes(32, "little") for high in (0, 2**255) for x in _SMALL_ORDER_X
)
"""Every 32-byte encoding of an X25519 point of order 1, 2, 4 or 8: the seven canonical
u-coordinates and the same with the ignored top bit set (14 in all)."""
