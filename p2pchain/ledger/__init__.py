"""The ledger as pure functions: keys, addresses, multi-asset UTXO transactions, blocks, votes.

Wire objects are frozen and RLP-encoded (`encode`, `decode`); `check_transaction`,
`validate_transaction` and `connect_block` apply the rules to a `UtxoView` (or any
`LedgerReader`) and raise `InvalidTransaction` / `InvalidBlock` with a `Reason`. No I/O and no
clock: heights and slots come in as a `BlockContext` (docs/protocol.md).
"""

from p2pchain.ledger.address import address_of as address_of
from p2pchain.ledger.address import decode_address as decode_address
from p2pchain.ledger.address import encode_address as encode_address
from p2pchain.ledger.block import Block as Block
from p2pchain.ledger.block import compute_body_root as compute_body_root
from p2pchain.ledger.crypto import SecretKey as SecretKey
from p2pchain.ledger.crypto import sha256 as sha256
from p2pchain.ledger.crypto import sign as sign
from p2pchain.ledger.crypto import tagged_hash as tagged_hash
from p2pchain.ledger.crypto import verify as verify
from p2pchain.ledger.encoding import decode as decode
from p2pchain.ledger.encoding import encode as encode
from p2pchain.ledger.evidence import DoubleProposal as DoubleProposal
from p2pchain.ledger.evidence import Evidence as Evidence
from p2pchain.ledger.evidence import VoteEquivocation as VoteEquivocation
from p2pchain.ledger.evidence import decode_evidence as decode_evidence
from p2pchain.ledger.evidence import is_double_proposal as is_double_proposal
from p2pchain.ledger.evidence import is_double_vote as is_double_vote
from p2pchain.ledger.evidence import is_surround_vote as is_surround_vote
from p2pchain.ledger.genesis import Allocation as Allocation
from p2pchain.ledger.genesis import GenesisConfig as GenesisConfig
from p2pchain.ledger.genesis import GenesisValidator as GenesisValidator
from p2pchain.ledger.genesis import genesis_block as genesis_block
from p2pchain.ledger.genesis import genesis_state as genesis_state
from p2pchain.ledger.genesis import self_bonded_genesis as self_bonded_genesis
from p2pchain.ledger.header import BlockHeader as BlockHeader
from p2pchain.ledger.header import SignedHeader as SignedHeader
from p2pchain.ledger.header import header_signing_message as header_signing_message
from p2pchain.ledger.offer import Offer as Offer
from p2pchain.ledger.offer import check_offer as check_offer
from p2pchain.ledger.offer import sign_offer as sign_offer
from p2pchain.ledger.partial import PartialTransaction as PartialTransaction
from p2pchain.ledger.partial import combine as combine_partials
from p2pchain.ledger.reward import reward_transaction as reward_transaction
from p2pchain.ledger.tx import NO_LOCK as NO_LOCK
from p2pchain.ledger.tx import IssuePayload as IssuePayload
from p2pchain.ledger.tx import Lock as Lock
from p2pchain.ledger.tx import LockKind as LockKind
from p2pchain.ledger.tx import MintPayload as MintPayload
from p2pchain.ledger.tx import OutPoint as OutPoint
from p2pchain.ledger.tx import Payload as Payload
from p2pchain.ledger.tx import RetirePayload as RetirePayload
from p2pchain.ledger.tx import RewardPayload as RewardPayload
from p2pchain.ledger.tx import SlashPayload as SlashPayload
from p2pchain.ledger.tx import Transaction as Transaction
from p2pchain.ledger.tx import TxInput as TxInput
from p2pchain.ledger.tx import TxKind as TxKind
from p2pchain.ledger.tx import TxOutput as TxOutput
from p2pchain.ledger.tx import compute_asset_id as compute_asset_id
from p2pchain.ledger.tx import offer_signing_message as offer_signing_message
from p2pchain.ledger.tx import tx_signing_message as tx_signing_message
from p2pchain.ledger.types import Address as Address
from p2pchain.ledger.types import Amount as Amount
from p2pchain.ledger.types import AssetId as AssetId
from p2pchain.ledger.types import BlockId as BlockId
from p2pchain.ledger.types import Epoch as Epoch
from p2pchain.ledger.types import Hash32 as Hash32
from p2pchain.ledger.types import Height as Height
from p2pchain.ledger.types import PublicKey as PublicKey
from p2pchain.ledger.types import Slot as Slot
from p2pchain.ledger.types import TxId as TxId
from p2pchain.ledger.utxo import AssetInfo as AssetInfo
from p2pchain.ledger.utxo import LedgerReader as LedgerReader
from p2pchain.ledger.utxo import TxUndo as TxUndo
from p2pchain.ledger.utxo import UndoData as UndoData
from p2pchain.ledger.utxo import UtxoView as UtxoView
from p2pchain.ledger.validation import BlockContext as BlockContext
from p2pchain.ledger.validation import SignatureCache as SignatureCache
from p2pchain.ledger.validation import check_transaction as check_transaction
from p2pchain.ledger.validation import connect_block as connect_block
from p2pchain.ledger.validation import reward_lock as reward_lock
from p2pchain.ledger.validation import unbonding_lock as unbonding_lock
from p2pchain.ledger.validation import validate_transaction as validate_transaction
from p2pchain.ledger.vote import Checkpoint as Checkpoint
from p2pchain.ledger.vote import Vote as Vote
from p2pchain.ledger.wallet import Coin as Coin
from p2pchain.ledger.wallet import Wallet as Wallet
from p2pchain.ledger.wallet import select_coins as select_coins

__all__ = [
    "NO_LOCK",
    "Address",
    "Allocation",
    "Amount",
    "AssetId",
    "AssetInfo",
    "Block",
    "BlockContext",
    "BlockHeader",
    "BlockId",
    "Checkpoint",
    "Coin",
    "DoubleProposal",
    "Epoch",
    "Evidence",
    "GenesisConfig",
    "GenesisValidator",
    "Hash32",
    "Height",
    "IssuePayload",
    "LedgerReader",
    "Lock",
    "LockKind",
    "MintPayload",
    "Offer",
    "OutPoint",
    "PartialTransaction",
    "Payload",
    "PublicKey",
    "RetirePayload",
    "RewardPayload",
    "SecretKey",
    "SignatureCache",
    "SignedHeader",
    "SlashPayload",
    "Slot",
    "Transaction",
    "TxId",
    "TxInput",
    "TxKind",
    "TxOutput",
    "TxUndo",
    "UndoData",
    "UtxoView",
    "Vote",
    "VoteEquivocation",
    "Wallet",
    "address_of",
    "check_offer",
    "check_transaction",
    "combine_partials",
    "compute_asset_id",
    "compute_body_root",
    "connect_block",
    "decode",
    "decode_address",
    "decode_evidence",
    "encode",
    "encode_address",
    "genesis_block",
    "genesis_state",
    "header_signing_message",
    "is_double_proposal",
    "is_double_vote",
    "is_surround_vote",
    "offer_signing_message",
    "reward_lock",
    "reward_transaction",
    "select_coins",
    "self_bonded_genesis",
    "sha256",
    "sign",
    "sign_offer",
    "tagged_hash",
    "tx_signing_message",
    "unbonding_lock",
    "validate_transaction",
    "verify",
]
