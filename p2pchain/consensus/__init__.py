"""Proof-of-stake consensus as pure, deterministic functions over a block tree and votes.

A `Store` holds the block tree; `on_tick`, `on_block`, `on_vote` and `on_evidence` update it
and `get_head` answers LMD-GHOST from the latest justified checkpoint. No clock, no I/O: the
current slot is always an argument. See docs/consensus.md for the design.
"""

from p2pchain.consensus.builder import build_block as build_block
from p2pchain.consensus.builder import get_vote_source as get_vote_source
from p2pchain.consensus.builder import make_vote as make_vote
from p2pchain.consensus.forkchoice import BlockOutcome as BlockOutcome
from p2pchain.consensus.forkchoice import adopt_checkpoints as adopt_checkpoints
from p2pchain.consensus.forkchoice import check_block_header as check_block_header
from p2pchain.consensus.forkchoice import get_block_view as get_block_view
from p2pchain.consensus.forkchoice import get_head as get_head
from p2pchain.consensus.forkchoice import get_head_view as get_head_view
from p2pchain.consensus.forkchoice import get_weight as get_weight
from p2pchain.consensus.forkchoice import on_block as on_block
from p2pchain.consensus.forkchoice import on_evidence as on_evidence
from p2pchain.consensus.forkchoice import on_tick as on_tick
from p2pchain.consensus.forkchoice import on_vote as on_vote
from p2pchain.consensus.forkchoice import pop_head_change as pop_head_change
from p2pchain.consensus.governance import GovernanceDraft as GovernanceDraft
from p2pchain.consensus.governance import GovernanceState as GovernanceState
from p2pchain.consensus.governance import Proposal as Proposal
from p2pchain.consensus.governance import ProposalStatus as ProposalStatus
from p2pchain.consensus.governance import Tally as Tally
from p2pchain.consensus.slashing import SlashingDetector as SlashingDetector
from p2pchain.consensus.store import HeadChange as HeadChange
from p2pchain.consensus.store import Store as Store
from p2pchain.consensus.store import get_checkpoint as get_checkpoint
from p2pchain.consensus.store import get_forkchoice_store as get_forkchoice_store
from p2pchain.consensus.store import get_governance as get_governance
from p2pchain.consensus.store import get_proposer as get_proposer
from p2pchain.consensus.store import get_validator_set as get_validator_set
from p2pchain.consensus.store import release_bodies as release_bodies
from p2pchain.consensus.types import compute_epoch_at_slot as compute_epoch_at_slot
from p2pchain.consensus.types import compute_slot_at_time as compute_slot_at_time
from p2pchain.consensus.types import compute_start_slot_at_epoch as compute_start_slot_at_epoch
from p2pchain.consensus.validators import ValidatorSet as ValidatorSet
from p2pchain.consensus.validators import compute_proposer as compute_proposer
from p2pchain.consensus.validators import compute_vote_slot as compute_vote_slot
from p2pchain.consensus.validators import get_duties as get_duties
from p2pchain.consensus.votes import validate_vote as validate_vote

__all__ = [
    "BlockOutcome",
    "GovernanceDraft",
    "GovernanceState",
    "HeadChange",
    "Proposal",
    "ProposalStatus",
    "SlashingDetector",
    "Store",
    "Tally",
    "ValidatorSet",
    "adopt_checkpoints",
    "build_block",
    "check_block_header",
    "compute_epoch_at_slot",
    "compute_proposer",
    "compute_slot_at_time",
    "compute_start_slot_at_epoch",
    "compute_vote_slot",
    "get_block_view",
    "get_checkpoint",
    "get_duties",
    "get_forkchoice_store",
    "get_governance",
    "get_head",
    "get_head_view",
    "get_proposer",
    "get_validator_set",
    "get_vote_source",
    "get_weight",
    "make_vote",
    "on_block",
    "on_evidence",
    "on_tick",
    "on_vote",
    "pop_head_change",
    "release_bodies",
    "validate_vote",
]
