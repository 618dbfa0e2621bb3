"""Logging of mbd's processes: one format, and the chatty client libraries kept at WARNING.

``mbd`` sets it up in ``main``; a process that uvicorn spawns for a second gateway worker starts
afresh, without that set-up, and sets it up when it builds its app.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CHATTY = ("kafka", "httpx", "httpcore", "py4j")  # py4j: a line per micro-batch at INFO


def configure_logging(*, verbose: bool = False) -> None:
    """Log to stderr at INFO (DEBUG when ``verbose``); nothing changes where the root logger
    already has a handler (the process that set it up first keeps its choice)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
