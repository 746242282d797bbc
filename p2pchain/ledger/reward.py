"""The block reward transaction: the one way every proposer, test kit and vector builds it."""

from __future__ import annotations

from collections.abc import Sequence

from p2pchain.ledger.tx import RewardPayload, Transaction, TxKind, TxOutput
from p2pchain.ledger.types import Address, Amount, AssetId, Height
from p2pchain.ledger.validation import refund_outputs, reward_lock
from p2pchain.params import ChainParams


def reward_transaction(
    *,
    height: Height,
    amount: Amount,
    address: Address,
    params: ChainParams,
    refunds: Sequence[tuple[Address, Amount]] = (),
) -> Transaction:
    """The first transaction of the block at `height`: `amount` native coins to `address`,
    then the governance deposits this block returns, all locked until the reward matures
    (the locks `connect_block` demands).

    The proposer's `amount` is at most ``params.block_reward`` plus the block's fees.
    """
    output = TxOutput(
        asset=AssetId(params.native_asset),
        amount=amount,
        address=address,
        lock=reward_lock(height, params),
    )
    return Transaction(
        kind=TxKind.REWARD,
        outputs=(output, *refund_outputs(refunds, height, params)),
        payload=RewardPayload(height=height),
    )
