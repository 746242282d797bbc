"""The JSON-RPC 2.0 envelope on its own: a toy method table, no node, no sockets."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchain.errors import DecodeError, InvalidTransaction, Reason
from p2pchain.rpc.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REJECTED,
    Dispatcher,
    Method,
    Params,
)

MAX_BATCH = 5


async def _echo(params: Params):
    return params.value("value")


async def _add(params: Params):
    return params.integer("a") + params.integer("b", default=0)


async def _reject(params: Params):
    raise InvalidTransaction(Reason.BAD_SIGNATURE, "input 0")


async def _undecodable(params: Params):
    raise DecodeError("tx: not a list")


async def _boom(params: Params):
    raise RuntimeError("a bug")


async def _hex(params: Params):
    return params.hex_bytes("data", length=2).hex()


async def _flag(params: Params):
    return params.flag("on", default=False)


METHODS = {
    "echo": Method(_echo, ("value",)),
    "add": Method(_add, ("a", "b"), 1),
    "reject": Method(_reject),
    "undecodable": Method(_undecodable),
    "boom": Method(_boom),
    "hex": Method(_hex, ("data",), 1),
    "flag": Method(_flag, ("on",)),
}


def dispatcher(**limits) -> Dispatcher:
    return Dispatcher(METHODS, max_batch=MAX_BATCH, **limits)


async def call(message):
    text = message if isinstance(message, str | bytes) else json.dumps(message)
    response = await dispatcher().handle(text)
    return None if response is None else json.loads(response)


def request(method, params=None, id_=1):
    body = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        body["params"] = params
    return body


async def test_positional_and_named_params_bind_to_the_same_names():
    assert await call(request("add", [2, 3])) == {"jsonrpc": "2.0", "id": 1, "result": 5}
    assert (await call(request("add", {"b": 3, "a": 2})))["result"] == 5
    assert (await call(request("add", [7])))["result"] == 7
    assert (await call(request("echo", id_="abc"))) == {
        "jsonrpc": "2.0",
        "id": "abc",
        "result": None,
    }
    assert (await call(request("echo", id_=None)))["id"] is None


@pytest.mark.parametrize(
    "params",
    [
        [1, 2, 3],  # too many
        {"a": 1, "c": 2},  # unknown name
        [],  # missing required
        {"b": 1},  # missing required
        ["1"],  # wrong type
        [-1],  # negative
        [True],  # a bool is not an integer
        [1.5],
    ],
)
async def test_bad_params_are_invalid_params(params):
    response = await call(request("add", params))
    assert response["error"]["code"] == INVALID_PARAMS
    assert response["id"] == 1


@pytest.mark.parametrize("data", ["abcd", "0xabc", "0xzz00", "0x00", "0x000000", 12])
async def test_bad_hex_is_invalid_params(data):
    response = await call(request("hex", [data]))
    assert response["error"]["code"] == INVALID_PARAMS


async def test_hex_and_flag_accessors_decode_valid_values():
    assert (await call(request("hex", ["0xABcd"])))["result"] == "abcd"
    assert (await call(request("flag", [True])))["result"] is True
    assert (await call(request("flag")))["result"] is False
    assert (await call(request("flag", ["yes"])))["error"]["code"] == INVALID_PARAMS


async def test_validation_errors_carry_their_reason_code():
    rejected = await call(request("reject"))
    assert rejected["error"]["code"] == REJECTED
    assert rejected["error"]["data"] == {"reason": "bad-signature"}
    malformed = await call(request("undecodable"))
    assert malformed["error"]["code"] == REJECTED
    assert malformed["error"]["data"] == {"reason": "malformed"}


async def test_a_bug_in_a_method_is_an_internal_error_without_details():
    response = await call(request("boom", id_=9))
    assert response == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": INTERNAL_ERROR, "message": "internal error"},
    }


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{", PARSE_ERROR),
        ('{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [NaN]}', PARSE_ERROR),
        ("[" * 100_000, PARSE_ERROR),
        (b"\xff\xfe{", PARSE_ERROR),
        ("[]", INVALID_REQUEST),
        ("1", INVALID_REQUEST),
        ('{"jsonrpc": "1.0", "id": 1, "method": "echo"}', INVALID_REQUEST),
        ('{"jsonrpc": "2.0", "id": 1, "method": 5}', INVALID_REQUEST),
        ('{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": "x"}', INVALID_REQUEST),
        ('{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": null}', INVALID_REQUEST),
        ('{"jsonrpc": "2.0", "id": [1], "method": "echo"}', INVALID_REQUEST),
        ('{"jsonrpc": "2.0", "id": true, "method": "echo"}', INVALID_REQUEST),
        ('{"jsonrpc": "2.0", "method": 1, "params": "bar"}', INVALID_REQUEST),
    ],
)
async def test_envelope_errors_have_their_codes_and_a_null_or_echoed_id(message, code):
    response = await call(message)
    assert response["error"]["code"] == code
    assert response["id"] in (None, 1)


async def test_unknown_method():
    response = await call(request("nope"))
    assert response["error"]["code"] == METHOD_NOT_FOUND


async def test_notifications_get_no_response_even_when_they_fail():
    for method in ("echo", "nope", "boom", "reject"):
        assert await call({"jsonrpc": "2.0", "method": method}) is None


async def test_batch_answers_requests_in_order_and_skips_notifications():
    batch = [
        request("add", [1, 1], id_=1),
        {"jsonrpc": "2.0", "method": "echo", "params": [5]},
        request("nope", id_=2),
        "junk",
        request("echo", ["x"], id_=3),
    ]
    responses = await call(batch)
    assert [r["id"] for r in responses] == [1, 2, None, 3]
    assert responses[0]["result"] == 2
    assert responses[1]["error"]["code"] == METHOD_NOT_FOUND
    assert responses[2]["error"]["code"] == INVALID_REQUEST
    assert responses[3]["result"] == "x"
    assert await call([{"jsonrpc": "2.0", "method": "echo"}] * 2) is None


async def test_batches_and_requests_above_the_limits_are_refused_whole():
    too_many = await call([request("echo", id_=i) for i in range(MAX_BATCH + 1)])
    assert too_many["error"]["code"] == LIMIT_EXCEEDED
    assert too_many["id"] is None
    small = Dispatcher(METHODS, max_request_bytes=100)
    text = json.dumps(request("echo", ["x" * 100]))
    response = json.loads(await small.handle(text))
    assert response["error"]["code"] == LIMIT_EXCEEDED
    assert json.loads(await small.handle(json.dumps(request("echo", ["x"]))))["result"] == "x"


# -- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
ids = (
    st.none()
    | st.integers()
    | st.text(max_size=5)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.integers(), max_size=1)
)
requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]),
        "method": st.sampled_from([*METHODS, "nope"]) | json_values,
    },
    optional={"id": ids, "params": json_values},
)
messages = requests | st.lists(requests | json_values, max_size=MAX_BATCH + 2) | json_values


def is_notification(item) -> bool:
    """A naive model of the spec: a well-formed request without an id."""
    return (
        isinstance(item, dict)
        and "id" not in item
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and ("params" not in item or isinstance(item["params"], list | dict))
    )


def check_response(response, request_) -> None:
    assert set(response) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"})
    assert response["jsonrpc"] == "2.0"
    if isinstance(request_, dict) and (type(request_.get("id")) in (int, str)):
        assert response["id"] == request_["id"]
    if "error" in response:
        error = response["error"]
        assert set(error) <= {"code", "message", "data"}
        assert type(error["code"]) is int
        assert isinstance(error["message"], str)


@given(message=messages)
async def test_any_json_gets_a_valid_response_or_none_as_the_spec_says(message):
    text = await dispatcher().handle(json.dumps(message))
    if isinstance(message, list) and 0 < len(message) <= MAX_BATCH:
        expected = [item for item in message if not is_notification(item)]
        if not expected:
            assert text is None
            return
        responses = json.loads(text)
        assert len(responses) == len(expected)
        for response, item in zip(responses, expected, strict=True):
            check_response(response, item)
    elif is_notification(message):
        assert text is None
    else:
        check_response(json.loads(text), message)


@given(data=st.binary(max_size=200) | st.text(max_size=200))
async def test_arbitrary_bytes_and_text_never_crash_the_dispatcher(data):
    text = await dispatcher().handle(data)
    if text is not None:
        response = json.loads(text)
        for item in response if isinstance(response, list) else [response]:
            check_response(item, None)
