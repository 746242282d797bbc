"""The JSON-RPC 2.0 envelope: one request text in, one response text (or nothing) out.

No I/O and no knowledge of the node: a `Dispatcher` maps method names to `Method`s, checks the
envelope (ids, batches, sizes), binds positional or named params to each method's parameter
names, and turns every failure into a JSON-RPC error object. Any text at all yields either
None (notifications only) or a valid JSON-RPC response; nothing a client sends raises here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from p2pchain.errors import DecodeError, P2PChainError, ValidationError

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
REJECTED: Final = -32000
"""The node refused the input (a transaction that breaks a rule); ``data.reason`` says why."""
LIMIT_EXCEEDED: Final = -32005
"""A request, batch or subscription count above the server's limits."""

DEFAULT_MAX_REQUEST_BYTES: Final = 1 << 20
DEFAULT_MAX_BATCH: Final = 100

_logger = logging.getLogger("p2pchain.rpc")


class RpcError(P2PChainError):
    """A JSON-RPC error object: what the server answers a failed call with, and what a client
    (the CLI's) raises when it receives one. `reason` is the `Reason` code of a rejection."""

    def __init__(self, code: int, message: str, data: dict[str, Json] | None = None) -> None:
        reason = data.get("reason") if data is not None else None
        self.reason = reason if isinstance(reason, str) else None
        super().__init__(f"{message} ({self.reason})" if self.reason else message)
        self.code = code
        self.message = message
        self.data = data


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {message}")


class Params:
    """The bound params of one call, with typed accessors that raise `INVALID_PARAMS`."""

    def __init__(self, values: Mapping[str, Json]) -> None:
        self._values = dict(values)

    def has(self, name: str) -> bool:
        """True if the client passed `name` with a value other than null."""
        return self._values.get(name) is not None

    def value(self, name: str) -> Json:
        """The raw JSON value (None when absent)."""
        return self._values.get(name)

    def _required(self, name: str) -> Json:
        value = self._values.get(name)
        if value is None:
            raise invalid_params(f"{name} is required")
        return value

    def text(self, name: str) -> str:
        value = self._required(name)
        if not isinstance(value, str):
            raise invalid_params(f"{name} must be a string")
        return value

    def integer(self, name: str, *, default: int | None = None, maximum: int | None = None) -> int:
        """A non-negative integer, at most `maximum`; `default` when absent."""
        if default is not None and not self.has(name):
            return default
        value = self._required(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid_params(f"{name} must be a non-negative integer")
        if maximum is not None and value > maximum:
            raise invalid_params(f"{name} must be at most {maximum}")
        return value

    def signed_integer(self, name: str) -> int:
        value = self._required(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_params(f"{name} must be an integer")
        return value

    def flag(self, name: str, *, default: bool) -> bool:
        if not self.has(name):
            return default
        value = self._values[name]
        if not isinstance(value, bool):
            raise invalid_params(f"{name} must be true or false")
        return value

    def hex_bytes(self, name: str, *, length: int | None = None) -> bytes:
        """``0x``-prefixed hex, exactly `length` bytes when given."""
        return parse_hex(self.text(name), name, length=length)


def parse_hex(text: str, name: str, *, length: int | None = None) -> bytes:
    """Decode ``0x``-prefixed hex, or raise `INVALID_PARAMS` naming the parameter."""
    if not text.startswith(("0x", "0X")):
        raise invalid_params(f"{name} must be 0x-prefixed hex")
    try:
        data = bytes.fromhex(text[2:])
    except ValueError:
        raise invalid_params(f"{name} is not valid hex") from None
    if len(text) % 2 or (length is not None and len(data) != length):
        expected = "an even number of hex digits" if length is None else f"{length} bytes"
        raise invalid_params(f"{name} must be {expected}")
    return data


def to_hex(data: bytes) -> str:
    return "0x" + data.hex()


def camel_case(name: str) -> str:
    """A Python field name as a JSON key: ``max_block_txs`` is ``maxBlockTxs``."""
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


Handler: TypeAlias = Callable[[Params], Awaitable[Json]]


@dataclass(frozen=True, slots=True)
class Method:
    """A callable plus its parameter names; the first `required` of them must be given."""

    call: Handler
    params: tuple[str, ...] = ()
    required: int = 0

    def bind(self, raw: Json) -> Params:
        """Match positional (list) or named (object) params to `params`."""
        if raw is None:
            raw = []
        if isinstance(raw, list):
            if len(raw) > len(self.params):
                raise invalid_params(f"expected at most {len(self.params)} params")
            values = dict(zip(self.params, raw, strict=False))
        elif isinstance(raw, dict):
            unknown = sorted(set(raw) - set(self.params))
            if unknown:
                raise invalid_params(f"unknown param {unknown[0]!r}")
            values = raw
        else:  # the envelope check rejects other shapes first
            raise invalid_params("params must be an array or an object")
        bound = Params(values)
        for name in self.params[: self.required]:
            if not bound.has(name):
                raise invalid_params(f"{name} is required")
        return bound


def _reject_constant(name: str) -> Json:
    raise ValueError(f"{name} is not JSON")


def _encode(value: Json) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def notification(method: str, params: Json) -> str:
    """A server-to-client notification (a request without an id: nothing answers it)."""
    return _encode({"jsonrpc": "2.0", "method": method, "params": params})


def _error(request_id: Json, error: RpcError) -> str:
    body: dict[str, Json] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return _encode({"jsonrpc": "2.0", "id": request_id, "error": body})


def _is_valid_id(value: Json) -> bool:
    return value is None or isinstance(value, str) or type(value) is int


def error_from_exception(exc: P2PChainError) -> RpcError:
    """The JSON-RPC error for a domain exception: rule violations carry their `Reason` code."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, ValidationError | DecodeError):
        data: dict[str, Json] = {"reason": exc.reason.value}
        return RpcError(REJECTED, str(exc), data)
    return RpcError(INTERNAL_ERROR, "internal error")


class Dispatcher:
    """Runs JSON-RPC 2.0 requests and batches against a table of methods."""

    def __init__(
        self,
        methods: Mapping[str, Method],
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.methods = methods
        self.max_request_bytes = max_request_bytes
        self.max_batch = max_batch

    async def handle(self, message: str | bytes) -> str | None:
        """The response text for one message, or None when nothing must be sent back."""
        size = (
            len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "replace"))
        )
        if size > self.max_request_bytes:
            limit = RpcError(LIMIT_EXCEEDED, f"request larger than {self.max_request_bytes} bytes")
            return _error(None, limit)
        try:
            payload: Json = json.loads(message, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return _error(None, RpcError(PARSE_ERROR, "parse error"))
        if not isinstance(payload, list):
            return await self._call(payload)
        if not payload:
            return _error(None, RpcError(INVALID_REQUEST, "empty batch"))
        if len(payload) > self.max_batch:
            limit = RpcError(LIMIT_EXCEEDED, f"batch larger than {self.max_batch} requests")
            return _error(None, limit)
        responses = [response for item in payload if (response := await self._call(item))]
        return "[" + ",".join(responses) + "]" if responses else None

    async def _call(self, request: Json) -> str | None:
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "request must be an object"))
        is_notification = "id" not in request
        request_id = request.get("id")
        if not _is_valid_id(request_id):
            return _error(None, RpcError(INVALID_REQUEST, "id must be a string, integer or null"))
        name = request.get("method")
        params = request.get("params")
        if (
            request.get("jsonrpc") != "2.0"
            or not isinstance(name, str)
            or not (params is None or isinstance(params, list | dict))
            or ("params" in request and params is None)
        ):
            return _error(request_id, RpcError(INVALID_REQUEST, "invalid request"))
        try:
            method = self.methods.get(name)
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, f"method not found: {name}")
            result = await method.call(method.bind(params))
            response = _encode({"jsonrpc": "2.0", "id": request_id, "result": result})
        except P2PChainError as exc:
            response = _error(request_id, error_from_exception(exc))
        except Exception:
            _logger.exception("RPC method %s failed", name)
            response = _error(request_id, RpcError(INTERNAL_ERROR, "internal error"))
        return None if is_notification else response
