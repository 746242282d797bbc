"""Network groups, trusted networks, pending-handshake slots and per-address inbound limits."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from p2pchain.errors import ConfigError
from p2pchain.protocol.admission import (
    DEFAULT_TRUSTED_NETWORKS,
    PendingSlots,
    check_inbound,
    is_trusted,
    network_group,
    parse_networks,
)

TRUSTED = parse_networks(DEFAULT_TRUSTED_NETWORKS)


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("203.0.113.5", "203.0.0.0/16"),
        ("203.0.250.1", "203.0.0.0/16"),
        ("203.1.0.1", "203.1.0.0/16"),
        ("127.0.0.2", "127.0.0.0/16"),
        ("127.1.0.2", "127.1.0.0/16"),
        ("2001:db8:1:2::1", "2001:db8::/32"),
        ("::ffff:203.0.113.5", "203.0.0.0/16"),
        ("node7", "node7"),
    ],
)
def test_network_groups_are_ipv4_16_and_ipv6_32(host, group):
    assert network_group(host) == group


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("127.0.0.2", False),
        ("10.0.0.1", False),
        ("node0", False),
    ],
)
def test_only_the_usual_loopback_addresses_are_trusted_by_default(host, trusted):
    assert is_trusted(host, TRUSTED) is trusted


def test_a_bad_network_is_a_config_error():
    with pytest.raises(ConfigError, match="not a network"):
        parse_networks(["10.0.0.0/8", "localhost"])


def test_a_host_at_its_bound_displaces_its_own_oldest_connection():
    slots = PendingSlots(max_total=10, max_per_address=2)
    assert slots.admit("a1", "10.0.0.1", 0.0) is None
    assert slots.admit("a2", "10.0.0.1", 1.0) is None
    assert slots.admit("honest", "10.9.0.1", 1.5) is None
    assert slots.admit("a3", "10.0.0.1", 2.0) == "a1"
    assert slots.count("10.0.0.1") == 2
    assert "honest" in slots


def test_when_full_the_most_crowded_group_makes_room():
    slots = PendingSlots(max_total=4, max_per_address=4)
    slots.admit("honest", "198.51.0.1", 0.0)  # the oldest, but alone in its group
    for n in range(3):
        slots.admit(f"a{n}", f"10.0.0.{n}", 1.0 + n)
    assert slots.admit("newcomer", "192.0.2.1", 5.0) == "a0"
    assert len(slots) == 4
    assert "honest" in slots


def test_a_trusted_host_has_no_per_address_bound_but_counts_in_the_total():
    slots = PendingSlots(max_total=3, max_per_address=1)
    assert [slots.admit(n, "127.0.0.1", float(n), trusted=True) for n in range(3)] == [None] * 3
    assert slots.admit(3, "127.0.0.1", 3.0, trusted=True) == 0


HOSTS = ["10.0.0.1", "10.0.0.2", "10.1.0.1", "192.0.2.1", "127.0.0.1"]


class PendingMachine(RuleBasedStateMachine):
    """Admissions and releases in any order keep every bound; the newest is always admitted."""

    def __init__(self):
        super().__init__()
        self.slots = PendingSlots(max_total=5, max_per_address=2)
        self.model = {}  # key -> (host, since, order)
        self.next_key = 0
        self.now = 0.0

    @rule(host=st.sampled_from(HOSTS), dt=st.floats(min_value=0, max_value=5))
    def admit(self, host, dt):
        self.now += dt
        key = self.next_key
        self.next_key += 1
        trusted = host == "127.0.0.1"
        victim = self.slots.admit(key, host, self.now, trusted=trusted)
        if victim is not None:
            v_host, v_since, v_order = self.model.pop(victim)
            same_host = [k for k, (h, _, _) in self.model.items() if h == host]
            if v_host == host and not trusted and len(same_host) + 1 >= 2:
                assert all(self.model[k][1:] > (v_since, v_order) for k in same_host)
            else:
                assert len(self.model) + 1 == 5
                assert all(
                    other[1:] > (v_since, v_order)
                    for other in self.model.values()
                    if network_group(other[0]) == network_group(v_host)
                )
        self.model[key] = (host, self.now, key)
        assert key in self.slots

    @rule(data=st.data())
    def release(self, data):
        if self.model:
            key = data.draw(st.sampled_from(sorted(self.model)))
            self.slots.release(key)
            del self.model[key]

    @invariant()
    def bounds_hold(self):
        assert len(self.slots) == len(self.model) <= 5
        for host in HOSTS:
            if host != "127.0.0.1":
                assert self.slots.count(host) <= 2


TestPending = PendingMachine.TestCase


def test_inbound_limits_per_address_and_per_group():
    peers = ["10.0.0.1", "10.0.0.1", "10.0.5.5"]
    assert check_inbound("10.0.0.1", peers, max_per_address=2, max_per_group=8) is not None
    assert check_inbound("10.0.0.2", peers, max_per_address=2, max_per_group=3) is not None
    assert check_inbound("10.0.0.2", peers, max_per_address=2, max_per_group=4) is None
    assert check_inbound("10.1.0.1", peers, max_per_address=1, max_per_group=1) is None


@given(
    hosts=st.lists(st.sampled_from(HOSTS), max_size=30),
    new=st.sampled_from(HOSTS),
    per_address=st.integers(1, 5),
    per_group=st.integers(1, 8),
)
def test_admitting_only_when_allowed_keeps_both_limits(hosts, new, per_address, per_group):
    admitted = []
    for host in [*hosts, new]:
        if check_inbound(host, admitted, max_per_address=per_address, max_per_group=per_group):
            continue
        admitted.append(host)
    for host in HOSTS:
        assert admitted.count(host) <= per_address
        assert sum(network_group(h) == network_group(host) for h in admitted) <= per_group
