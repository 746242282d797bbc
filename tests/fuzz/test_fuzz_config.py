"""The config loader fed arbitrary TOML documents, values and bytes: only `ConfigError` comes out.

A mistake in network.toml or node.toml must end `p2pchain node` with one line naming the file
and the field, not a traceback. What loads must also be usable: the genesis builds (or says
`ConfigError` why not), and writing the network back gives a file that loads to the same value.
"""

import contextlib
import string
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.cli.config import (
    MAX_CLOCK_SKEW_MS,
    NODE_KEYS,
    NetworkFile,
    dump_network,
    dump_node,
    load_network,
    load_node,
    read_key,
)
from p2pchain.errors import ConfigError
from p2pchain.ledger.address import decode_address, encode_address
from p2pchain.ledger.genesis import genesis_block
from p2pchain.params import COIN, ChainParams

PARAM_NAMES = sorted(name for name in ChainParams.__dataclass_fields__ if name != "native_asset")
VALIDATOR_KEY = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
"""x-only key of the secp256k1 secret 3: on the curve."""


def _write(data: bytes) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="p2pchain-fuzz-config-"))
    path = directory / "file.toml"
    path.write_bytes(data)
    return path


def _toml_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.sampled_from([0, 1, -1, 2**64 - 1, 2**63 - 1]),
        st.booleans(),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.sampled_from(["dp2p", "", "DP2P", "dp2p1qqq", VALIDATOR_KEY, "nothex"]),
        st.datetimes(),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8), children),
        ),
        max_leaves=8,
    )


def _address_texts(prefix: str = "dp2p") -> st.SearchStrategy[str]:
    return st.one_of(
        st.binary(min_size=20, max_size=20).map(lambda a: encode_address(a, prefix)),
        st.text(max_size=50),
        st.sampled_from(["dp2p1", "tp2p1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqk9lp3h"]),
    )


@st.composite
def network_documents(draw: st.DrawFn) -> dict[str, object]:
    """network.toml-shaped documents: the right tables and names, with any values in them."""
    values = _toml_values()
    chain = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(PARAM_NAMES), st.text(string.ascii_lowercase, max_size=8)),
            st.one_of(values, st.integers(min_value=-1, max_value=2**64)),
            max_size=4,
        )
    )
    allocation = st.fixed_dictionaries(
        {"address": _address_texts(), "amount": st.integers(min_value=-1, max_value=2**64)},
        optional={"extra": values},
    )
    validator = st.fixed_dictionaries(
        {
            "key": st.one_of(st.just(VALIDATOR_KEY), st.text(string.hexdigits, max_size=70)),
            "owner": _address_texts(),
            "stake": st.one_of(
                st.sampled_from([COIN, 5 * COIN]), st.integers(min_value=-1, max_value=2**64)
            ),
        }
    )
    genesis = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "genesis_time_ms": st.one_of(
                    st.integers(min_value=-(2**63), max_value=2**64), values
                ),
                "allocations": st.one_of(st.lists(allocation, max_size=2), values),
                "validators": st.one_of(st.lists(validator, max_size=2), values),
            },
        )
    )
    document: dict[str, object] = {"chain": chain, "genesis": genesis}
    if draw(st.booleans()):
        document[draw(st.sampled_from(["chain", "genesis", "other"]))] = draw(values)
    return document


def _dump(document: dict[str, object]) -> bytes | None:
    try:
        return tomli_w.dumps(document).encode()
    except (TypeError, ValueError):  # not representable in TOML (e.g. an int past 64 bits)
        return None


def _check_network(data: bytes) -> NetworkFile | None:
    """The loader's contract: ConfigError, or a network whose genesis builds and that survives
    being written back."""
    path = _write(data)
    try:
        network = load_network(path)
    except ConfigError:
        return None
    with contextlib.suppress(ConfigError):
        genesis_block(network.genesis, network.params)
    prefix = network.params.address_prefix
    assert decode_address(encode_address(bytes(20), prefix), prefix) == bytes(20)
    dump_network(network, path)
    assert load_network(path) == network
    return network


@given(document=network_documents())
def test_network_documents(document: dict[str, object]) -> None:
    if (data := _dump(document)) is not None:
        _check_network(data)


def _node_values(key: str) -> st.SearchStrategy[object]:
    """Values near what `key` takes, and anything else."""
    near: dict[str, st.SearchStrategy[object]] = {
        "clock_skew_ms": st.one_of(
            st.integers(min_value=-MAX_CLOCK_SKEW_MS - 1, max_value=MAX_CLOCK_SKEW_MS + 1),
            st.sampled_from([MAX_CLOCK_SKEW_MS, -MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS + 1]),
        ),
        "log_level": st.sampled_from(["debug", "info", "warning", "error", "INFO", ""]),
        "dev_rpc": st.booleans(),
        "manual_clock": st.booleans(),
        "listen": st.lists(st.sampled_from(["tcp://127.0.0.1:0", "ws://[::1]:9", "x"]), max_size=2),
        "bootnodes": st.lists(st.text(max_size=20), max_size=2),
        "advertise": st.lists(st.text(max_size=20), max_size=2),
    }
    paths = st.sampled_from(["network.toml", "node.key", "data", "../x", ""])
    return st.one_of(near.get(key, paths), _toml_values())


@st.composite
def node_documents(draw: st.DrawFn) -> dict[str, object]:
    """node.toml-shaped documents: the loader's own keys with values near theirs, and others."""
    keys = draw(st.lists(st.sampled_from(sorted(NODE_KEYS)), max_size=len(NODE_KEYS), unique=True))
    document = {key: draw(_node_values(key)) for key in keys}
    if draw(st.booleans()):
        document.update({"network": "network.toml", "node_key_file": "node.key"})
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))] = draw(
            _toml_values()
        )
    return document


@given(document=node_documents())
def test_node_documents(document: dict[str, object]) -> None:
    """ConfigError, or a node file that survives being written back."""
    if (data := _dump(document)) is None:
        return
    path = _write(data)
    try:
        node = load_node(path)
    except ConfigError:
        return
    assert abs(node.clock_skew_ms) <= MAX_CLOCK_SKEW_MS
    dump_node(node, path)
    assert load_node(path) == node


@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
@pytest.mark.parametrize("load", [_check_network, lambda data: load_node(_write(data))])
def test_arbitrary_bytes(load, data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        load(data)


@given(data=st.binary(max_size=100))
def test_key_files(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        read_key(_write(data))


# -- regressions --------------------------------------------------------------------------


@pytest.mark.parametrize("load", [load_network, load_node])
@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b"a = " + b"[" * 5_000 + b"]" * 5_000, id="nested-arrays"),
        pytest.param(b"a = " + b"{b = " * 5_000 + b"1" + b"}" * 5_000, id="nested-tables"),
        pytest.param(b"network = '\xff\xfe'\n", id="not-utf8"),
    ],
)
def test_unparseable_files_are_config_errors(load, text: bytes) -> None:
    """Found by fuzzing: tomllib recurses per nesting level (RecursionError) and reads bytes as
    UTF-8 (UnicodeDecodeError); neither is a TOMLDecodeError."""
    with pytest.raises(ConfigError, match=r"file\.toml"):
        load(_write(text))


def _network_text(genesis_time_ms: int = 0, chain: str = "") -> bytes:
    owner = encode_address(bytes(20), "dp2p")
    return (
        f"[chain]\n{chain}\n[genesis]\ngenesis_time_ms = {genesis_time_ms}\n"
        f"[[genesis.validators]]\nkey = '{VALIDATOR_KEY}'\nowner = '{owner}'\nstake = {COIN}\n"
    ).encode()


def test_valid_network_text_loads() -> None:
    network = _check_network(_network_text())
    assert network is not None
    assert network.genesis.validators[0].stake == COIN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(_network_text(genesis_time_ms=-1), "genesis_time_ms", id="negative-time"),
        pytest.param(_network_text(chain="min_stake = -5"), "min_stake", id="negative-param"),
        pytest.param(_network_text(chain=f"max_money = {2**64}"), "max_money", id="param-past-u64"),
        pytest.param(
            _network_text(chain="address_prefix = ''"), "address_prefix", id="empty-prefix"
        ),
        pytest.param(_network_text(chain="address_prefix = 'a b'"), "address_prefix", id="space"),
        pytest.param(
            _network_text(chain="address_prefix = 'DP2P'"), "address_prefix", id="upper-case"
        ),
    ],
)
def test_values_the_chain_cannot_encode_are_config_errors(text: bytes, message: str) -> None:
    """Found by fuzzing: a negative genesis time loaded and then failed as ValueError in the
    genesis encoder; a prefix bech32m cannot carry loaded and made every address unreadable."""
    with pytest.raises(ConfigError, match=message):
        load_network(_write(text))
