"""The light client's trio shell: a swarm without listeners, requests, and verification.

Every answer is checked before it is used (`LightState`); an answer that does not verify, or
that does not come in time, costs the peer that sent it score (`Offence.BAD_RESPONSE`,
`Offence.TIMEOUT`) and the request goes to the next peer. So one honest peer among those
connected is enough; none gives `NoHonestPeer`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import trio

from p2pchain.consensus.light import LightState
from p2pchain.errors import DecodeError, InvalidProof, NoHonestPeer
from p2pchain.ledger.block import Block
from p2pchain.ledger.crypto import SecretKey
from p2pchain.ledger.genesis import GenesisConfig, genesis_block
from p2pchain.ledger.header import BlockHeader
from p2pchain.ledger.proofs import ProvenValue, QueryKind, StateQuery
from p2pchain.ledger.tx import OutPoint, Transaction, TxOutput
from p2pchain.ledger.types import Address, AssetId, BlockId, Epoch, Height, PublicKey, Slot, TxId
from p2pchain.ledger.utxo import AssetInfo
from p2pchain.ledger.vote import Checkpoint
from p2pchain.net.swarm import (
    InboundMessage,
    PeerConnected,
    PeerDisconnected,
    Swarm,
    SwarmConfig,
    open_swarm,
)
from p2pchain.net.transports import SocketTransport, Transport
from p2pchain.params import ChainParams
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.messages import (
    Blocks,
    Finality,
    GetBlocksById,
    GetFinality,
    GetStateProof,
    GetTxProof,
    Graft,
    LightAnswer,
    LightError,
    Prune,
    StateProofAnswer,
    Status,
    Topic,
    TxProofAnswer,
)
from p2pchain.protocol.scoring import Offence

BAD_ANSWER_PENALTY = 50.0
"""Score a peer loses for an answer that does not verify: two such answers and it is banned
(the swarm's disconnect threshold is -100)."""

_A = TypeVar("_A", bound=LightAnswer | Blocks)
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True, kw_only=True)
class LightConfig:
    """What a light client needs: the network's parameters and genesis (from the network's
    files), full nodes to ask, and where to start trusting.

    `trusted` is a finalized checkpoint known out of band (a block explorer, a friend's node,
    the app's release); None starts from genesis, which works on any chain but replays every
    certificate since. A trusted block older than what nodes keep stake paths for
    (`STAKE_PATHS_KEPT` checkpoints) cannot be followed: pick a newer one.
    """

    params: ChainParams
    genesis: GenesisConfig
    peers: tuple[str, ...]
    trusted: Checkpoint | None = None
    identity: SecretKey | None = None
    request_timeout: float = 10.0
    """Seconds a peer has to answer one request before it is penalised and the next is asked."""
    target_peers: int = 4
    """Full nodes to keep connected (each answer comes from one of them)."""
    transport: Transport | None = None
    """How to reach peers; None: TCP and WebSocket sockets (tests pass a simulated one)."""


class LightClient:
    """Follow finality and verify state; see `open_light_client`."""

    def __init__(self, config: LightConfig, swarm: Swarm, state: LightState | None) -> None:
        self.config = config
        self._swarm = swarm
        self._state = state
        self._request_ids = itertools.count(1)
        self._waiting: dict[int, tuple[PeerId, trio.MemorySendChannel[object]]] = {}
        self._peers: list[PeerId] = []
        self._peer_arrived = trio.Event()

    # -- what it knows ------------------------------------------------------------------------
    @property
    def state(self) -> LightState:
        if self._state is None:
            raise NoHonestPeer("not started: the trusted checkpoint's header is not verified")
        return self._state

    @property
    def finalized(self) -> Checkpoint:
        """The newest finalized checkpoint this client verified."""
        return self.state.finalized

    def finalized_header(self) -> BlockHeader:
        return self.state.finalized_header

    # -- following finality -----------------------------------------------------------------
    async def sync(self) -> Checkpoint:
        """Ask peers for certificates until none has anything newer; return the checkpoint.

        Raises:
            NoHonestPeer: no peer answered with something that verifies or said there is
                nothing newer; or every peer that answered cannot certify from our
                checkpoint (it is older than what they keep: start from a newer one).
        """
        while True:
            try:
                await self._ask_each(
                    lambda: GetFinality(request_id=self._next_id(), trusted=self.finalized),
                    Finality,
                    self._take_certificate,
                )
            except _NobodyKnew as nobody:
                if nobody.reasons and all(r is LightError.CANNOT_CERTIFY for r in nobody.reasons):
                    raise NoHonestPeer(
                        f"no peer can certify from epoch {self.finalized.epoch}: start from a "
                        "newer trusted checkpoint"
                    ) from None
                return self.finalized

    def _take_certificate(self, answer: Finality) -> Checkpoint:
        if answer.certificate is None:
            raise _Pass(answer.error)
        return self.state.advance(answer.certificate)

    async def wait_finalized(self, epoch: int, *, poll: float = 0.5) -> Checkpoint:
        """Sync every `poll` seconds until the finalized epoch reaches `epoch` (nobody pushes
        anything to a light client: it asks)."""
        while True:
            if (await self.sync()).epoch >= epoch:
                return self.finalized
            await trio.sleep(poll)

    # -- reading state ------------------------------------------------------------------------
    async def prove(self, query: StateQuery, block_id: BlockId | None = None) -> ProvenValue:
        """What `query` gives in the state after `block_id` (default: the finalized block),
        checked against that block's verified header. Nodes keep the state of their own
        finalized block only: when none holds ours any more, the client syncs and asks at the
        newer one (default block only).

        Raises:
            NoHonestPeer: no peer gave a proof that verifies.
        """
        for _ in range(3):
            try:
                return await self._prove_at(
                    self.finalized.block_id if block_id is None else block_id, query
                )
            except _NobodyKnew as nobody:
                if block_id is not None or LightError.UNKNOWN_BLOCK not in nobody.reasons:
                    raise NoHonestPeer(f"no peer could prove it: {nobody.reasons}") from None
                await self.sync()
        raise NoHonestPeer("the peers' finalized state kept moving past ours")

    async def _prove_at(self, block: BlockId, query: StateQuery) -> ProvenValue:
        state = self.state
        return await self._ask_each(
            lambda: GetStateProof(request_id=self._next_id(), block_id=block, query=query),
            StateProofAnswer,
            lambda answer: _checked_state(state, block, query, answer),
        )

    async def outputs(self, address: Address) -> list[tuple[OutPoint, TxOutput]]:
        """Every unspent output `address` owns at the finalized block."""
        value = await self.prove(StateQuery(kind=QueryKind.ACCOUNT, address=address))
        assert isinstance(value, list)
        return value

    async def balance(self, address: Address, asset: AssetId | None = None) -> int:
        """What `address` holds of `asset` (default: the native coin) at the finalized block,
        locked outputs included."""
        wanted = AssetId(self.config.params.native_asset) if asset is None else asset
        return sum(o.amount for _, o in await self.outputs(address) if o.asset == wanted)

    async def output(self, outpoint: OutPoint, owner: Address) -> TxOutput | None:
        """The output at `outpoint` if it is unspent and owned by `owner`, else None."""
        query = StateQuery(kind=QueryKind.OUTPUT, outpoint=outpoint, address=owner)
        value = await self.prove(query)
        assert value is None or isinstance(value, TxOutput)
        return value

    async def asset(self, asset: AssetId) -> AssetInfo | None:
        value = await self.prove(StateQuery(kind=QueryKind.ASSET, asset=asset))
        assert value is None or isinstance(value, AssetInfo)
        return value

    async def validators(self) -> dict[PublicKey, int]:
        """The bonded stake of every validator at the finalized block."""
        value = await self.prove(StateQuery(kind=QueryKind.VALIDATORS))
        assert isinstance(value, dict)
        return value

    async def transaction(self, txid: TxId) -> tuple[BlockHeader, Transaction] | None:
        """The finalized block holding `txid` and the transaction, proven by a Merkle branch;
        None when no peer places it in a finalized block (after syncing once if a peer's is
        newer than ours)."""
        for _ in range(2):
            newer: list[bool] = []
            try:
                return await self._transaction_once(txid, newer)
            except _NobodyKnew:
                if not newer:
                    return None
                await self.sync()
        return None

    async def _transaction_once(
        self, txid: TxId, newer: list[bool]
    ) -> tuple[BlockHeader, Transaction]:
        """One round of asking; `newer` gets an entry per peer whose block is final there and
        not yet here."""
        state = self.state

        def check(answer: TxProofAnswer) -> tuple[BlockHeader, Transaction]:
            if answer.block_id is None or answer.transaction is None or answer.proof is None:
                raise _Pass(answer.error)
            if answer.transaction.txid != txid:
                raise InvalidProof("the answer is another transaction")
            header = state.header(answer.block_id)
            if header is None:
                newer.append(True)
                raise _Pass(None)
            state.verify_transaction(answer.block_id, answer.transaction, answer.proof)
            return header, answer.transaction

        return await self._ask_each(
            lambda: GetTxProof(request_id=self._next_id(), txid=txid), TxProofAnswer, check
        )

    # -- requests -----------------------------------------------------------------------------
    def _next_id(self) -> int:
        return next(self._request_ids)

    async def _ask_each(
        self,
        make: Callable[[], object],
        kind: type[_A],
        check: Callable[[_A], _R],
    ) -> _R:
        """Ask connected peers in turn until one answers with something `check` accepts. A
        wrong answer is penalised, a late one too; an answer that `check` passes on (`_Pass`:
        the peer has nothing, through no fault of its own) sends the request to the next peer.

        Raises:
            _NobodyKnew: no peer gave an accepted answer and at least one passed.
            NoHonestPeer: no peer gave an accepted answer and none passed.
        """
        await self._wait_peer()
        reasons: list[LightError | None] = []
        for peer in list(self._peers):
            request = make()
            try:
                answer = await self._request(peer, request, kind)
                if answer is None:
                    self._swarm.penalize(peer, 10.0, Offence.TIMEOUT)
                    continue
                return check(answer)
            except _Pass as passed:
                reasons.append(passed.reason)
            except (InvalidProof, DecodeError):
                self._swarm.penalize(peer, BAD_ANSWER_PENALTY, Offence.BAD_RESPONSE)
        if reasons:
            raise _NobodyKnew(reasons)
        raise NoHonestPeer(f"none of {len(self._peers)} peers gave a {kind.__name__} that verifies")

    async def _request(self, peer: PeerId, request: object, kind: type[_A]) -> _A | None:
        request_id = request.request_id  # type: ignore[attr-defined]
        send, receive = trio.open_memory_channel[object](1)
        self._waiting[request_id] = (peer, send)
        try:
            if not self._swarm.send(peer, request):  # type: ignore[arg-type]
                return None
            with trio.move_on_after(self.config.request_timeout):
                answer = await receive.receive()
                if not isinstance(answer, kind):
                    raise InvalidProof(f"a {type(answer).__name__} for a {kind.__name__}")
                return answer
            return None
        finally:
            del self._waiting[request_id]

    async def _wait_peer(self) -> None:
        with trio.move_on_after(self.config.request_timeout):
            while not self._peers:
                await self._peer_arrived.wait()
        if not self._peers:
            raise NoHonestPeer("no full node connected")

    async def run(self) -> None:
        """Route answers to the requests waiting for them; keep out of gossip meshes."""
        while batch := await self._swarm.events.receive_batch(64):
            for event in batch:
                if isinstance(event, PeerConnected):
                    if event.peer_id not in self._peers:
                        self._peers.append(event.peer_id)
                    for topic in Topic:
                        self._swarm.send(event.peer_id, Prune(topic=topic, backoff_s=3_600))
                    self._peer_arrived.set()
                    self._peer_arrived = trio.Event()
                elif isinstance(event, PeerDisconnected):
                    if event.peer_id in self._peers:
                        self._peers.remove(event.peer_id)
                elif isinstance(event, InboundMessage):
                    self._on_message(event)
                    event.release()

    def _on_message(self, event: InboundMessage) -> None:
        message = event.message
        if isinstance(message, Graft):
            self._swarm.send(event.peer_id, Prune(topic=message.topic, backoff_s=3_600))
            return
        request_id = getattr(message, "request_id", None)
        waiting = self._waiting.get(request_id) if isinstance(request_id, int) else None
        if waiting is not None and waiting[0] == event.peer_id:
            with contextlib.suppress(trio.WouldBlock):  # a second answer to one request
                waiting[1].send_nowait(message)


class _Pass(Exception):
    """A peer's honest "I have nothing for that" (`LightError`): ask the next one."""

    def __init__(self, reason: LightError | None) -> None:
        super().__init__(reason)
        self.reason = reason


class _NobodyKnew(Exception):
    """Every peer that answered passed; `reasons` are what they said."""

    def __init__(self, reasons: list[LightError | None]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


def _checked_state(
    state: LightState, block: BlockId, query: StateQuery, answer: StateProofAnswer
) -> ProvenValue:
    if answer.proof is None:
        raise _Pass(answer.error)
    return state.verify_state(block, query, answer.proof)


def _status(state: LightState | None, genesis: BlockId) -> Status:
    """What we announce: our finalized block as head, so that nobody syncs from us."""
    checkpoint = (
        state.finalized if state is not None else Checkpoint(epoch=Epoch(0), block_id=genesis)
    )
    header = state.finalized_header if state is not None else None
    return Status(
        head=checkpoint.block_id,
        head_height=header.height if header is not None else Height(0),
        head_slot=header.slot if header is not None else Slot(0),
        finalized=checkpoint,
    )


@asynccontextmanager
async def open_light_client(config: LightConfig) -> AsyncIterator[LightClient]:
    """Connect to `config.peers`, verify the trusted checkpoint's header, and yield a client.
    Call `sync()` to follow finality; nothing is trusted before it verifies.

    Raises:
        NoHonestPeer: no peer connected, or none served the trusted block.
    """
    genesis = genesis_block(config.genesis, config.params)
    trusted = config.trusted or Checkpoint(epoch=Epoch(0), block_id=genesis.block_id)
    state = (
        LightState.from_checkpoint(config.params, trusted, genesis.header)
        if trusted.block_id == genesis.block_id
        else None
    )
    swarm_config = SwarmConfig(
        identity=config.identity or SecretKey.from_entropy(os.urandom(32)),
        chain_id=config.params.chain_id,
        genesis=genesis.block_id,
        listen=(),
        bootnodes=config.peers,
        advertise=(),
        target_outbound=config.target_peers,
        max_inbound=0,
        transport=config.transport or SocketTransport(),
    )
    holder: list[LightClient] = []

    def status() -> Status:
        return _status(holder[0]._state if holder else None, genesis.block_id)

    async with open_swarm(swarm_config, status) as swarm:
        client = LightClient(config, swarm, state)
        holder.append(client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            if state is None:
                header = await client._ask_each(
                    lambda: GetBlocksById(
                        request_id=client._next_id(), block_ids=(trusted.block_id,)
                    ),
                    Blocks,
                    lambda answer: only_block(answer, trusted.block_id, "the trusted block").header,
                )
                client._state = LightState.from_checkpoint(config.params, trusted, header)
            yield client
            nursery.cancel_scope.cancel()


def only_block(answer: Blocks, block_id: BlockId, what: str) -> Block:
    """The one block a `GetBlocksById` of `block_id` asked for.

    Raises:
        InvalidProof: the answer holds anything else (named `what` in the message).
    """
    blocks: tuple[Block, ...] = answer.blocks
    if len(blocks) != 1 or blocks[0].block_id != block_id:
        raise InvalidProof(f"not {what}")
    return blocks[0]
