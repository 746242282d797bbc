"""Log output of the command line: plain or JSON lines, every record tagged with its node id.

The library itself only creates loggers (`p2pchain.net`, `p2pchain.chain`, ...); records from
a node carry a ``node`` field (its short id). Configuring handlers is the application's job,
which for the CLI is this module.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s [%(node)s] %(message)s"


class _NodeField(logging.Filter):
    """Give records from outside a node an empty ``node`` field, so one format fits all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node"):
            record.node = "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, node, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": getattr(record, "node", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, log_format: str) -> None:
    """Send p2pchain's logs to stderr at `level` in `log_format` ("plain" or "json")."""
    handler = logging.StreamHandler()
    handler.addFilter(_NodeField())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger("p2pchain")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False
