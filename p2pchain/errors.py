"""The one exception tree of p2pchain.

Every error a caller can catch derives from `P2PChainError`. Rule violations carry a stable
`Reason` code so that RPC errors, peer scoring and logs agree on what went wrong without parsing
message text. Errors from third-party codecs are re-raised as ours with ``from exc``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Reason(StrEnum):
    """Stable machine-readable reason codes; the string values are part of the public API."""

    # decoding
    MALFORMED = "malformed"
    # amounts and sizes
    AMOUNT_OUT_OF_RANGE = "amount-out-of-range"
    VALUE_OVERFLOW = "value-overflow"
    TX_TOO_LARGE = "tx-too-large"
    TOO_MANY_INPUTS = "too-many-inputs"
    TOO_MANY_OUTPUTS = "too-many-outputs"
    BLOCK_TOO_LARGE = "block-too-large"
    # transaction structure
    NO_INPUTS = "no-inputs"
    NO_OUTPUTS = "no-outputs"
    DUPLICATE_INPUT = "duplicate-input"
    BAD_LOCK = "bad-lock"
    BAD_TX_KIND = "bad-tx-kind"
    # inputs and witnesses
    MISSING_INPUT = "missing-input"
    WITNESS_KEY_MISMATCH = "witness-key-mismatch"
    BAD_SIGNATURE = "bad-signature"
    LOCKED = "locked"
    IMMATURE = "immature"
    STAKE_LOCKED = "stake-locked"
    # value
    VALUE_NOT_CONSERVED = "value-not-conserved"
    NEGATIVE_FEE = "negative-fee"
    # assets
    UNKNOWN_ASSET = "unknown-asset"
    NOT_ISSUER = "not-issuer"
    CAP_EXCEEDED = "cap-exceeded"
    BAD_ASSET_NAME = "bad-asset-name"
    BAD_RETIREMENT = "bad-retirement"
    # offers
    BAD_OFFER = "bad-offer"
    OFFER_EXPIRED = "offer-expired"
    OFFER_BOOK_FULL = "offer-book-full"
    # governance
    BAD_PROPOSAL = "bad-proposal"
    BAD_ACTIVATION = "bad-activation"
    BAD_GOV_VOTE = "bad-gov-vote"
    GOVERNANCE_FULL = "governance-full"
    UNKNOWN_PROPOSAL = "unknown-proposal"
    VOTING_CLOSED = "voting-closed"
    NOT_A_VOTER = "not-a-voter"
    DOUBLE_GOV_VOTE = "double-gov-vote"
    # partially signed transactions
    PARTIAL_MISMATCH = "partial-mismatch"
    UNSIGNED_INPUT = "unsigned-input"
    # staking and slashing
    STAKE_TOO_SMALL = "stake-too-small"
    BAD_STAKE_OUTPUT = "bad-stake-output"
    BAD_UNBOND = "bad-unbond"
    BAD_EVIDENCE = "bad-evidence"
    NOTHING_TO_SLASH = "nothing-to-slash"
    # blocks
    BAD_REWARD = "bad-reward"
    MISPLACED_REWARD = "misplaced-reward"
    DUPLICATE_TX = "duplicate-tx"
    CONFLICTING_SPEND = "conflicting-spend"
    BAD_BODY_ROOT = "bad-body-root"
    BAD_STATE_ROOT = "bad-state-root"
    BAD_HEIGHT = "bad-height"
    BAD_PARENT = "bad-parent"
    UNKNOWN_PARENT = "unknown-parent"
    SLOT_NOT_AFTER_PARENT = "slot-not-after-parent"
    FUTURE_SLOT = "future-slot"
    WRONG_PROPOSER = "wrong-proposer"
    BAD_PROPOSER_SIGNATURE = "bad-proposer-signature"
    CONFLICTS_WITH_FINALIZED = "conflicts-with-finalized"
    DUPLICATE_BLOCK = "duplicate-block"
    # votes
    BAD_VOTE_SIGNATURE = "bad-vote-signature"
    UNKNOWN_VALIDATOR = "unknown-validator"
    UNKNOWN_VOTE_HEAD = "unknown-vote-head"
    BAD_VOTE_TARGET = "bad-vote-target"
    BAD_VOTE_SOURCE = "bad-vote-source"
    FUTURE_VOTE = "future-vote"
    STALE_VOTE = "stale-vote"
    # mempool
    MEMPOOL_CONFLICT = "mempool-conflict"
    MEMPOOL_FULL = "mempool-full"
    FEE_TOO_LOW = "fee-too-low"
    ALREADY_KNOWN = "already-known"
    PEER_LIMIT = "peer-limit"


class P2PChainError(Exception):
    """Root of every error p2pchain raises on purpose."""


class DecodeError(P2PChainError, ValueError):
    """Bytes that are not the canonical encoding of the expected object."""

    reason: ClassVar[Reason] = Reason.MALFORMED


class InvalidAddress(DecodeError):
    """Text that is not a well-formed address of this chain (bad checksum, prefix or length)."""


class ValidationError(P2PChainError, ValueError):
    """A well-formed object that breaks a rule; `reason` says which."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class InvalidTransaction(ValidationError):
    """A transaction that may not enter the ledger."""


class InvalidBlock(ValidationError):
    """A block that may not extend the chain."""


class InvalidVote(ValidationError):
    """A vote the fork choice must not count."""


class InvalidOffer(ValidationError):
    """A standing offer that no transaction could take (or that our offer book refuses)."""


class InvalidPartial(ValidationError):
    """Partially signed transactions that cannot be combined or finished as asked."""


class InvalidProof(P2PChainError, ValueError):
    """A state or inclusion proof that does not verify against the root it claims."""


class BadSnapshotManifest(InvalidProof):
    """A snapshot manifest that is not the state root's: its entries do not give the root, or
    a subtree's records hash to its entry but are not as many as it counts (the root commits
    to the hashes, not to the counts)."""


class BadSnapshotChunk(InvalidProof):
    """Snapshot records a peer sent that are not what the manifest (hence the state root)
    commits to: out of order, outside their subtree, too many, or hashing to another entry."""


class NoHonestPeer(P2PChainError):
    """No connected peer gave an answer that verifies (a light client asked them all)."""


class ProtocolError(P2PChainError):
    """A violation of the peer protocol."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow now (our bug or misuse)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the connection cannot continue."""


class GossipIgnore(P2PChainError):
    """Drop, don't relay, and don't blame the sender (duplicate, too early, too late)."""

    penalty: ClassVar[int] = 0

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class GossipReject(P2PChainError):
    """Drop, don't relay, and penalise the sender: the message breaks a rule."""

    penalty: ClassVar[int] = 20

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class StorageError(P2PChainError):
    """The data directory is unusable (corrupt, from another chain, or locked)."""


class SlashingProtectionError(P2PChainError):
    """Signing this would make the validator slashable (or the record cannot vouch it is not)."""


class ConfigError(P2PChainError, ValueError):
    """A configuration value is missing or wrong."""


class InsufficientFunds(P2PChainError, ValueError):
    """The wallet's spendable outputs cannot cover the amount plus the fee."""


class SubscriptionOverflow(P2PChainError):
    """An event subscriber fell behind its buffer; events after `last_seq` were not delivered.

    Resubscribe with ``since=last_seq`` to replay them from the node's bounded event history.
    """

    def __init__(self, last_seq: int, detail: str = "") -> None:
        super().__init__(detail or f"subscriber fell behind after event {last_seq}")
        self.last_seq = last_seq


class EventHistoryExpired(SubscriptionOverflow):
    """The events after `last_seq` are older than the node's event history: they are gone."""
