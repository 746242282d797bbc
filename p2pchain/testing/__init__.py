"""Test kit shipped with p2pchain (like `trio.testing`): hypothesis strategies and fixtures.

Nothing in the library imports this package; tests and fuzzers do.
"""

from p2pchain.testing.strategies import FAST_PARAMS as FAST_PARAMS
from p2pchain.testing.strategies import FundedChain as FundedChain
from p2pchain.testing.strategies import addresses as addresses
from p2pchain.testing.strategies import asset_ids as asset_ids
from p2pchain.testing.strategies import asset_infos as asset_infos
from p2pchain.testing.strategies import block_headers as block_headers
from p2pchain.testing.strategies import blocks as blocks
from p2pchain.testing.strategies import build_block as build_block
from p2pchain.testing.strategies import checkpoints as checkpoints
from p2pchain.testing.strategies import evidence as evidence
from p2pchain.testing.strategies import funded_chain as funded_chain
from p2pchain.testing.strategies import genesis_configs as genesis_configs
from p2pchain.testing.strategies import hashes as hashes
from p2pchain.testing.strategies import locks as locks
from p2pchain.testing.strategies import native_fee as native_fee
from p2pchain.testing.strategies import offers as offers
from p2pchain.testing.strategies import outpoints as outpoints
from p2pchain.testing.strategies import partial_transactions as partial_transactions
from p2pchain.testing.strategies import payloads as payloads
from p2pchain.testing.strategies import public_keys as public_keys
from p2pchain.testing.strategies import secret_keys as secret_keys
from p2pchain.testing.strategies import sign_header as sign_header
from p2pchain.testing.strategies import sign_vote as sign_vote
from p2pchain.testing.strategies import signed_headers as signed_headers
from p2pchain.testing.strategies import slashable_evidence as slashable_evidence
from p2pchain.testing.strategies import transactions as transactions
from p2pchain.testing.strategies import tx_inputs as tx_inputs
from p2pchain.testing.strategies import tx_outputs as tx_outputs
from p2pchain.testing.strategies import tx_undos as tx_undos
from p2pchain.testing.strategies import uint64s as uint64s
from p2pchain.testing.strategies import undo_data as undo_data
from p2pchain.testing.strategies import valid_blocks as valid_blocks
from p2pchain.testing.strategies import valid_transaction as valid_transaction
from p2pchain.testing.strategies import view_state as view_state
from p2pchain.testing.strategies import votes as votes
from p2pchain.testing.testnet import TESTNET_PARAMS as TESTNET_PARAMS
from p2pchain.testing.testnet import Testnet as Testnet
from p2pchain.testing.testnet import testnet as testnet

__all__ = [
    "FAST_PARAMS",
    "TESTNET_PARAMS",
    "FundedChain",
    "Testnet",
    "addresses",
    "asset_ids",
    "asset_infos",
    "block_headers",
    "blocks",
    "build_block",
    "checkpoints",
    "evidence",
    "funded_chain",
    "genesis_configs",
    "hashes",
    "locks",
    "native_fee",
    "offers",
    "outpoints",
    "partial_transactions",
    "payloads",
    "public_keys",
    "secret_keys",
    "sign_header",
    "sign_vote",
    "signed_headers",
    "slashable_evidence",
    "testnet",
    "transactions",
    "tx_inputs",
    "tx_outputs",
    "tx_undos",
    "uint64s",
    "undo_data",
    "valid_blocks",
    "valid_transaction",
    "view_state",
    "votes",
]
