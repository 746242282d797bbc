"""The sans-IO gossip router, alone and in the deterministic multi-node simulator."""

import tracemalloc
from collections import Counter
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchain.errors import GossipReject, LocalProtocolError
from p2pchain.ledger.crypto import sha256
from p2pchain.protocol.connection import PeerId
from p2pchain.protocol.gossip import (
    Deliver,
    GossipMessage,
    GossipParams,
    GossipRouter,
    Send,
    Validate,
    Verdict,
)
from p2pchain.protocol.messages import (
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Topic,
    compute_message_id,
)
from p2pchain.protocol.scoring import Offence, Penalize
from p2pchain.testing.gossip_sim import GossipSim

PARAMS = GossipParams()


def peer(i: int) -> PeerId:
    return PeerId(sha256(b"peer" + bytes([i])))


def router_with_peers(count: int, *, outbound: bool = False, seed: int = 0) -> GossipRouter:
    router = GossipRouter(Random(seed))
    for i in range(count):
        router.add_peer(peer(i), outbound=outbound)
    return router


def sends(actions: list, message_type: type) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and isinstance(a.message, message_type)]


def penalties(actions: list) -> list[Penalize]:
    return [a for a in actions if isinstance(a, Penalize)]


# -- simulated networks --------------------------------------------------------------------


@pytest.mark.parametrize(("size", "seed"), [(10, 1), (10, 2), (20, 3), (20, 4)])
def test_every_message_reaches_every_node_a_bounded_number_of_times(size, seed):
    sim = GossipSim(size, seed=seed, degree=7)
    sim.run_for(5.0)
    ids = [
        sim.publish(i % size, topic, b"message %d" % i)
        for i, topic in zip(range(3 * size), list(Topic) * size, strict=False)
    ]
    sim.run_for(5.0)
    for message_id in ids:
        assert sim.reached(message_id) == size
        assert sim.max_copies(message_id) <= PARAMS.d_high + 1
    # Everyone but the publisher got it from the network exactly once.
    for node in sim.nodes:
        assert len({d.message_id for d in node.delivered}) == len(node.delivered)
    total_duplicates = sum(node.router.statistics().duplicates for node in sim.nodes)
    assert total_duplicates > 0


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32), size=st.integers(10, 20), degree=st.integers(3, 12))
def test_delivery_and_duplicate_bound_hold_for_any_seed(seed, size, degree):
    sim = GossipSim(size, seed=seed, degree=degree)
    sim.run_for(3.0)
    message_id = sim.publish(seed % size, Topic.BLOCK, b"block")
    sim.run_for(3.0)
    assert sim.reached(message_id) == size
    assert sim.max_copies(message_id) <= PARAMS.d_high + 1


def test_same_seed_same_run():
    def run() -> list:
        sim = GossipSim(12, seed=99, loss=0.2)
        sim.run_for(2.0)
        sim.publish(3, Topic.VOTE, b"vote")
        sim.run_for(4.0)
        return [node.router.statistics() for node in sim.nodes]

    assert run() == run()


def test_invalid_message_is_never_forwarded_and_its_sender_is_penalized():
    def validator(index: int, topic: Topic, data: bytes) -> Verdict:
        return Verdict.REJECT if data.startswith(b"bad") else Verdict.ACCEPT

    sim = GossipSim(12, seed=5, degree=3, validator=validator)
    sim.run_for(3.0)
    liar = sim.nodes[0]
    message_id = sim.publish(0, Topic.TRANSACTION, b"bad tx")
    sim.run_for(5.0)
    neighbours = set(sim.neighbours(0))
    for node in sim.nodes[1:]:
        assert message_id not in node.known
        if node.index in neighbours:
            assert node.copies[message_id] == 1
            assert (
                Penalize(
                    peer_id=liar.peer_id,
                    amount=GossipReject.penalty,
                    reason=Offence.INVALID_MESSAGE,
                )
                in node.penalties
            )
            assert node.scores.score(liar.peer_id, sim.now) < 0
        else:
            assert node.copies[message_id] == 0


def test_meshes_stay_within_bounds_when_enough_peers_exist():
    sim = GossipSim(24, seed=11, degree=16)
    for _ in range(10):
        sim.run_for(PARAMS.heartbeat_interval)
        for topic in Topic:
            for node, size in zip(sim.nodes, sim.mesh_sizes(topic), strict=True):
                if sim.now > 2 * PARAMS.heartbeat_interval:
                    assert PARAMS.d_low <= size <= PARAMS.d_high, (node.index, size)


def test_ihave_iwant_recovers_messages_lost_on_mesh_links():
    params = GossipParams(flood_publish=False)
    sim = GossipSim(20, seed=8, degree=16, params=params)
    sim.run_for(3.0)
    target = sim.nodes[7]
    for neighbour in sim.neighbours(7):
        sim.set_link_loss(neighbour, 7, 1.0)
    message_id = sim.publish(0, Topic.BLOCK, b"block 1")
    sim.run_for(0.3)
    assert message_id not in target.known
    sim.set_loss(0.0)
    sim.run_for(3 * params.heartbeat_interval)
    assert message_id in target.known
    stats = target.router.statistics()
    assert stats.ihave_received > 0
    assert stats.iwant_sent > 0


# -- one router ----------------------------------------------------------------------------


def test_messages_from_unknown_peers_are_a_local_error():
    router = router_with_peers(1)
    with pytest.raises(LocalProtocolError):
        router.handle_message(peer(9), Graft(topic=Topic.BLOCK), 0.0)
    with pytest.raises(LocalProtocolError):
        router.remove_peer(peer(9))
    with pytest.raises(LocalProtocolError):
        router.add_peer(peer(0), outbound=True)


def test_received_message_is_validated_before_anything_is_forwarded():
    router = router_with_peers(10)
    router.heartbeat(0.0)
    mesh = router.mesh_peers(Topic.TRANSACTION)
    sender = sorted(mesh)[0]
    message = Publish(topic=Topic.TRANSACTION, data=b"tx")
    message_id = compute_message_id(Topic.TRANSACTION, b"tx")
    actions = router.handle_message(sender, message, 1.0)
    assert actions == [
        Validate(message_id=message_id, topic=Topic.TRANSACTION, data=b"tx", from_peer=sender)
    ]
    assert router.handle_message(sender, message, 1.1) == []
    actions = router.report_validation(message_id, Verdict.ACCEPT, 1.2)
    assert actions[0] == Deliver(topic=Topic.TRANSACTION, data=b"tx", message_id=message_id)
    assert {s.peer_id for s in sends(actions, Publish)} == mesh - {sender}
    assert router.statistics().duplicates == 1
    assert router.statistics().delivered == 1


def test_reject_penalizes_every_sender_and_forwards_nothing():
    router = router_with_peers(10)
    router.heartbeat(0.0)
    message = Publish(topic=Topic.VOTE, data=b"forged vote")
    message_id = compute_message_id(Topic.VOTE, b"forged vote")
    router.handle_message(peer(1), message, 1.0)
    router.handle_message(peer(2), message, 1.0)
    actions = router.report_validation(message_id, Verdict.REJECT, 1.0, penalty=42)
    assert actions == [
        Penalize(peer_id=peer(1), amount=42, reason=Offence.INVALID_MESSAGE),
        Penalize(peer_id=peer(2), amount=42, reason=Offence.INVALID_MESSAGE),
    ]
    # Neither re-validated nor served later.
    assert router.handle_message(peer(3), message, 2.0) == []
    assert router.handle_message(peer(3), IWant(message_ids=(message_id,)), 2.0) == []
    assert router.statistics().rejected == 1


def test_ignore_drops_without_penalty():
    router = router_with_peers(3)
    router.handle_message(peer(0), Publish(topic=Topic.VOTE, data=b"late"), 0.0)
    message_id = compute_message_id(Topic.VOTE, b"late")
    assert router.report_validation(message_id, Verdict.IGNORE, 0.0) == []
    assert router.report_validation(message_id, Verdict.ACCEPT, 0.0) == []
    assert router.statistics().ignored == 1


def test_own_publish_is_flooded_but_not_delivered_back():
    router = router_with_peers(15)
    actions = router.publish(Topic.BLOCK, b"my block", 0.0)
    assert {s.peer_id for s in sends(actions, Publish)} == router.peers
    assert not [a for a in actions if isinstance(a, Deliver)]
    assert router.publish(Topic.BLOCK, b"my block", 0.1) == []


def test_heartbeat_grafts_up_to_d():
    router = router_with_peers(20)
    actions = router.heartbeat(0.0)
    for topic in Topic:
        assert len(router.mesh_peers(topic)) == PARAMS.d
    assert len(sends(actions, Graft)) == PARAMS.d * len(Topic)


def test_full_mesh_refuses_inbound_grafts_and_prunes_extra_outbound_ones():
    router = GossipRouter(Random(1))
    for i in range(20):
        router.add_peer(peer(i), outbound=i >= 15)
    for i in range(15):
        router.handle_message(peer(i), Graft(topic=Topic.BLOCK), 0.0)
    assert len(router.mesh_peers(Topic.BLOCK)) == PARAMS.d_high
    for i in range(15, 20):
        router.handle_message(peer(i), Graft(topic=Topic.BLOCK), 0.0)
    assert len(router.mesh_peers(Topic.BLOCK)) == PARAMS.d_high + 5
    actions = router.heartbeat(1.0)
    mesh = router.mesh_peers(Topic.BLOCK)
    assert len(mesh) == PARAMS.d
    assert len([p for p in mesh if p in {peer(i) for i in range(15, 20)}]) >= PARAMS.d_out
    assert len([s for s in sends(actions, Prune) if s.message.topic is Topic.BLOCK]) == (
        PARAMS.d_high + 5 - PARAMS.d
    )


def test_graft_during_backoff_is_penalized_and_refused():
    router = router_with_peers(3)
    router.handle_message(peer(0), Graft(topic=Topic.BLOCK), 0.0)
    assert peer(0) in router.mesh_peers(Topic.BLOCK)
    router.handle_message(peer(0), Prune(topic=Topic.BLOCK, backoff_s=60), 1.0)
    assert peer(0) not in router.mesh_peers(Topic.BLOCK)
    actions = router.handle_message(peer(0), Graft(topic=Topic.BLOCK), 30.0)
    assert penalties(actions) == [
        Penalize(peer_id=peer(0), amount=PARAMS.behaviour_penalty, reason=Offence.GRAFT_IN_BACKOFF)
    ]
    assert [s.message for s in sends(actions, Prune)] == [
        Prune(topic=Topic.BLOCK, backoff_s=round(PARAMS.prune_backoff))
    ]
    assert peer(0) not in router.mesh_peers(Topic.BLOCK)
    # The refusal restarted the backoff; once it is over the graft is welcome.
    assert router.handle_message(peer(0), Graft(topic=Topic.BLOCK), 91.0) == []
    assert peer(0) in router.mesh_peers(Topic.BLOCK)


def test_heartbeat_does_not_graft_a_peer_in_backoff():
    router = router_with_peers(1)
    router.handle_message(peer(0), Prune(topic=Topic.VOTE, backoff_s=60), 0.0)
    router.heartbeat(1.0)
    assert peer(0) not in router.mesh_peers(Topic.VOTE)
    assert peer(0) in router.mesh_peers(Topic.BLOCK)
    router.heartbeat(61.0)
    assert peer(0) in router.mesh_peers(Topic.VOTE)


def test_iwant_for_unknown_ids_is_ignored_and_known_ids_are_capped():
    router = router_with_peers(2)
    router.publish(Topic.TRANSACTION, b"tx", 0.0)
    message_id = compute_message_id(Topic.TRANSACTION, b"tx")
    assert router.handle_message(peer(0), IWant(message_ids=(bytes(20),)), 0.1) == []
    served = 0
    for _ in range(10):
        served += len(router.handle_message(peer(0), IWant(message_ids=(message_id,)), 0.1))
    assert served == PARAMS.gossip_retransmission


def test_iwant_answers_per_heartbeat_are_capped():
    router = GossipRouter(Random(0), GossipParams(max_iwant_ids=3))
    router.add_peer(peer(0), outbound=False)
    ids = [compute_message_id(Topic.VOTE, b"%d" % i) for i in range(5)]
    for i in range(5):
        router.publish(Topic.VOTE, b"%d" % i, 0.0)
    assert len(router.handle_message(peer(0), IWant(message_ids=tuple(ids)), 0.1)) == 3
    assert router.handle_message(peer(0), IWant(message_ids=tuple(ids)), 0.2) == []
    router.heartbeat(0.7)
    assert len(router.handle_message(peer(0), IWant(message_ids=tuple(ids)), 0.8)) == 3


def test_ihave_floods_are_capped_per_heartbeat():
    params = GossipParams(max_ihave_messages=2, max_ihave_length=10)
    router = GossipRouter(Random(0), params)
    router.add_peer(peer(0), outbound=False)
    asked = []
    for i in range(5):
        ids = tuple(sha256(b"%d-%d" % (i, j))[:20] for j in range(8))
        for action in sends(
            router.handle_message(peer(0), IHave(topic=Topic.VOTE, message_ids=ids), 0.0), IWant
        ):
            asked.extend(action.message.message_ids)
    assert len(asked) == 10
    assert router.statistics().iwant_sent == 2


def test_broken_iwant_promise_is_penalized():
    router = router_with_peers(1)
    advertised = compute_message_id(Topic.BLOCK, b"withheld")
    actions = router.handle_message(
        peer(0), IHave(topic=Topic.BLOCK, message_ids=(advertised,)), 0.0
    )
    assert [s.message for s in sends(actions, IWant)] == [IWant(message_ids=(advertised,))]
    assert penalties(router.heartbeat(1.0)) == []
    assert penalties(router.heartbeat(PARAMS.iwant_followup_time + 0.1)) == [
        Penalize(peer_id=peer(0), amount=PARAMS.behaviour_penalty, reason=Offence.BROKEN_PROMISE)
    ]
    assert router.statistics().broken_promises == 1


def test_kept_iwant_promise_is_not_penalized():
    router = router_with_peers(1)
    advertised = compute_message_id(Topic.BLOCK, b"block")
    router.handle_message(peer(0), IHave(topic=Topic.BLOCK, message_ids=(advertised,)), 0.0)
    router.handle_message(peer(0), Publish(topic=Topic.BLOCK, data=b"block"), 0.5)
    assert penalties(router.heartbeat(10.0)) == []


PROMISE_IDS = [compute_message_id(Topic.BLOCK, b"block %d" % i) for i in range(6)]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ihave", "publish", "heartbeat", "reconnect"]),
            st.integers(0, 2),
            st.integers(0, 5),
        ),
        max_size=60,
    )
)
def test_open_promises_are_counted_exactly_and_kept_by_any_copy(steps):
    """The router counts the IWANT promises open over all peers (a Publish looks through the
    peers only when one is open): the count matches the promises held after every step, and
    a message arriving from anyone keeps every peer's promise for it."""
    router = router_with_peers(3)
    now = 0.0
    for action, who, which in steps:
        now += 1.0  # promises fall due after `iwant_followup_time` (3 s): some are broken
        message_id = PROMISE_IDS[which]
        if action == "ihave":
            router.handle_message(
                peer(who), IHave(topic=Topic.BLOCK, message_ids=(message_id,)), now
            )
        elif action == "publish":
            router.handle_message(
                peer(who), Publish(topic=Topic.BLOCK, data=b"block %d" % which), now
            )
            assert all(message_id not in state.promises for state in router._peers.values())
        elif action == "heartbeat":
            router.heartbeat(now)
        else:
            router.remove_peer(peer(who))
            router.add_peer(peer(who), outbound=False)
        held = sum(len(state.promises) for state in router._peers.values())
        assert router._open_promises == held


def test_validation_queue_and_seen_cache_are_bounded():
    params = GossipParams(max_pending_validations=3, max_seen=5)
    router = GossipRouter(Random(0), params)
    router.add_peer(peer(0), outbound=False)
    flood = [Publish(topic=Topic.TRANSACTION, data=b"%d" % i) for i in range(10)]
    validations = [router.handle_message(peer(0), message, 0.0) for message in flood]
    assert [len(v) for v in validations] == [1, 1, 1] + [0] * 7
    assert router.statistics().dropped == 7
    for actions in validations[:3]:
        router.report_validation(actions[0].message_id, Verdict.ACCEPT, 0.1)
    # A dropped message was not marked seen, so a later copy is validated.
    assert len(router.handle_message(peer(0), flood[5], 0.2)) == 1
    for message in flood[6:]:
        router.handle_message(peer(0), message, 0.3)
    assert router.statistics().seen <= params.max_seen
    assert router.statistics().pending_validations <= params.max_pending_validations


def test_empty_messages_from_one_peer_are_each_validated_and_released():
    """Empty messages hold no pending bytes; releasing the second after the first must not
    fail (it once raised KeyError)."""
    router = GossipRouter(Random(0), PARAMS)
    router.add_peer(peer(0), outbound=False)
    validations = [
        router.handle_message(peer(0), Publish(topic=topic, data=b""), 0.0)
        for topic in (Topic.TRANSACTION, Topic.VOTE)
    ]
    ids = [actions[0].message_id for actions in validations]
    for message_id in ids:
        delivered = router.report_validation(message_id, Verdict.ACCEPT, 0.1)
        assert [a.message_id for a in delivered if isinstance(a, Deliver)] == [message_id]
    assert router.statistics().pending_validations == 0
    follow_up = router.handle_message(peer(0), Publish(topic=Topic.BLOCK, data=b"b"), 0.2)
    assert len(follow_up) == 1


def test_seen_cache_expires_after_ttl():
    params = GossipParams(seen_ttl=10.0)
    router = GossipRouter(Random(0), params)
    router.add_peer(peer(0), outbound=False)
    message = Publish(topic=Topic.TRANSACTION, data=b"tx")
    router.handle_message(peer(0), message, 0.0)
    router.report_validation(compute_message_id(Topic.TRANSACTION, b"tx"), Verdict.ACCEPT, 0.0)
    router.heartbeat(5.0)
    assert router.handle_message(peer(0), message, 6.0) == []
    router.heartbeat(11.0)
    assert router.statistics().seen == 0
    assert len(router.handle_message(peer(0), message, 12.0)) == 1


def test_lazy_gossip_goes_to_non_mesh_peers_only():
    router = router_with_peers(30)
    router.heartbeat(0.0)
    router.publish(Topic.EVIDENCE, b"evidence", 0.1)
    actions = router.heartbeat(0.7)
    targets = {s.peer_id for s in sends(actions, IHave)}
    assert targets
    assert not targets & router.mesh_peers(Topic.EVIDENCE)
    assert len(targets) >= PARAMS.d_lazy


# -- adversarial peers ---------------------------------------------------------------------

SMALL = GossipParams(
    d=3,
    d_low=2,
    d_high=4,
    d_lazy=2,
    d_out=1,
    max_seen=16,
    max_pending_validations=4,
    max_ihave_messages=2,
    max_ihave_length=6,
    max_iwant_ids=5,
)
DATA = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"])
TOPICS = st.sampled_from(list(Topic))
IDS = st.one_of(st.builds(compute_message_id, TOPICS, DATA), st.binary(min_size=20, max_size=20))
MESSAGES: st.SearchStrategy[GossipMessage] = st.one_of(
    st.builds(Publish, topic=TOPICS, data=DATA | st.binary(max_size=8)),
    st.builds(IHave, topic=TOPICS, message_ids=st.tuples(IDS, IDS, IDS)),
    st.builds(IWant, message_ids=st.lists(IDS, max_size=12).map(tuple)),
    st.builds(Graft, topic=TOPICS),
    st.builds(Prune, topic=TOPICS, backoff_s=st.integers(0, 120)),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("message"), st.integers(0, 7), MESSAGES),
        st.tuples(st.just("verdict"), st.sampled_from(list(Verdict)), st.integers(0, 3)),
        st.tuples(st.just("heartbeat"), st.floats(0.0, 30.0)),
        st.tuples(st.just("publish"), TOPICS, DATA),
    ),
    max_size=60,
)


@settings(max_examples=60)
@given(steps=STEPS, seed=st.integers(0, 1000))
def test_adversarial_message_sequences_keep_state_bounded(steps, seed):
    router = GossipRouter(Random(seed), SMALL)
    for i in range(8):
        router.add_peer(peer(i), outbound=i % 3 == 0)
    outbound = 3
    now = 0.0
    pending: list[bytes] = []
    relayable: set[bytes] = set()
    asked: Counter[PeerId] = Counter()
    for step in steps:
        if step[0] == "message":
            actions = router.handle_message(peer(step[1]), step[2], now)
        elif step[0] == "verdict":
            if not pending:
                continue
            message_id = pending.pop(step[2] % len(pending))
            if step[1] is Verdict.ACCEPT:
                relayable.add(message_id)
            actions = router.report_validation(message_id, step[1], now)
        elif step[0] == "heartbeat":
            now += step[1]
            actions = router.heartbeat(now)
            asked.clear()
            for topic in Topic:
                assert len(router.mesh_peers(topic)) <= SMALL.d_high
        else:
            relayable.add(compute_message_id(step[1], step[2]))
            actions = router.publish(step[1], step[2], now)
        pending.extend(a.message_id for a in actions if isinstance(a, Validate))
        for action in actions:
            if isinstance(action, Send):
                assert action.peer_id in router.peers
                if isinstance(action.message, Publish):
                    message = action.message
                    assert compute_message_id(message.topic, message.data) in relayable
                if isinstance(action.message, IWant):
                    asked[action.peer_id] += len(action.message.message_ids)
            if isinstance(action, Penalize):
                assert action.amount > 0
        assert all(count <= SMALL.max_ihave_length for count in asked.values())
        stats = router.statistics()
        assert stats.seen <= SMALL.max_seen
        assert stats.pending_validations <= SMALL.max_pending_validations
        for topic in Topic:
            assert len(router.mesh_peers(topic)) <= SMALL.d_high + outbound


# -- memory bounds under floods ------------------------------------------------------------

JUNK = 10_000


def test_pending_validation_bytes_stay_bounded_per_peer_and_in_total():
    params = GossipParams(
        max_pending_validations=JUNK,
        max_pending_bytes=200_000,
        max_pending_bytes_per_peer=50_000,
        max_seen=2 * JUNK,
    )
    router = GossipRouter(Random(0), params)
    for i in range(9):
        router.add_peer(peer(i), outbound=False)
    flood = [Publish(topic=Topic.BLOCK, data=b"%06d" % i + bytes(994)) for i in range(JUNK)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        validations: list[Validate] = []
        for i, message in enumerate(flood):
            # Nothing is ever judged: the worst case for the validation queue.
            validations += router.handle_message(peer(i % 8), message, 0.0)
            stats = router.statistics()
            assert stats.pending_bytes <= params.max_pending_bytes
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(validations) == params.max_pending_bytes // 1_000  # 4 shares fill the total
    assert router.statistics().dropped == JUNK - len(validations)
    # The flood's messages are the test's own objects; the router keeps ids and bookkeeping.
    assert held < 500 * len(validations)
    # The total is full: an honest message is dropped, but not marked seen, so once a verdict
    # frees room its next copy is validated.
    honest = Publish(topic=Topic.BLOCK, data=b"honest")
    assert router.handle_message(peer(8), honest, 0.0) == []
    router.report_validation(validations[0].message_id, Verdict.REJECT, 0.1)
    (validate,) = router.handle_message(peer(8), honest, 0.2)
    assert validate.data == b"honest"


def test_one_peer_cannot_take_more_than_its_share_of_pending_bytes():
    params = GossipParams(max_pending_bytes=200_000, max_pending_bytes_per_peer=50_000)
    router = GossipRouter(Random(0), params)
    router.add_peer(peer(0), outbound=False)
    router.add_peer(peer(1), outbound=False)
    for i in range(JUNK):
        junk = Publish(topic=Topic.BLOCK, data=b"%06d" % i + bytes(994))
        router.handle_message(peer(0), junk, 0.0)
    assert router.statistics().pending_bytes == 50_000
    honest = Publish(topic=Topic.BLOCK, data=b"honest block")
    (validate,) = router.handle_message(peer(1), honest, 0.0)
    assert isinstance(validate, Validate)


def test_message_cache_stays_within_its_byte_bound():
    params = GossipParams(max_mcache_bytes=100_000, max_seen=2 * JUNK)
    router = GossipRouter(Random(0), params)
    router.add_peer(peer(0), outbound=False)
    router.add_peer(peer(1), outbound=False)
    for i in range(JUNK):
        data = b"%06d" % i + bytes(2_994)
        (validate,) = router.handle_message(peer(0), Publish(topic=Topic.BLOCK, data=data), 0.0)
        router.report_validation(validate.message_id, Verdict.ACCEPT, 0.0)
        assert router.statistics().cached_bytes <= params.max_mcache_bytes
    assert router.statistics().cached_messages == params.max_mcache_bytes // 3_000
    # The newest are still served; the oldest left early.
    newest = compute_message_id(Topic.BLOCK, b"%06d" % (JUNK - 1) + bytes(2_994))
    oldest = compute_message_id(Topic.BLOCK, b"%06d" % 0 + bytes(2_994))
    served = router.handle_message(peer(1), IWant(message_ids=(newest, oldest)), 0.0)
    assert [s.message.data[:6] for s in sends(served, Publish)] == [b"%06d" % (JUNK - 1)]
    for _ in range(PARAMS.mcache_len + 1):
        router.heartbeat(1.0)
    assert router.statistics().cached_bytes == 0
