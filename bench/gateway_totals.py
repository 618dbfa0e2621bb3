"""What the gateway accepted in a benchmark's run, read from the totals it logs when it stops.

``/metrics`` goes with the process, and read before the stop it misses what phones post until
they stop. The supervisor of ``mbd up`` stops the simulator before the gateway, so the totals the
gateway logs at its stop (:data:`ingest.metrics.STOPPED_TOTALS`) compare with the simulator's
own tally.
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest.metrics import STOPPED_TOTALS


def stopped_gateway_totals(log: Path, *, after_byte: int = 0) -> tuple[dict[str, int], int] | None:
    """The totals the gateway processes logged at their stops after ``after_byte`` of the log,
    summed (a restarted process counts from 0), and how many stops logged them; None when none
    did or one cannot be read (a sum without it would be too small)."""
    try:
        with log.open("rb") as file:
            file.seek(after_byte)
            lines = file.read().decode(errors="replace").splitlines()
        totals: dict[str, int] = {}
        stops = 0
        for line in lines:
            if STOPPED_TOTALS in line:
                logged = json.loads(line.split(STOPPED_TOTALS, 1)[1])
                if not isinstance(logged, dict):
                    return None
                for name, value in logged.items():
                    totals[name] = totals.get(name, 0) + int(value)
                stops += 1
    except (OSError, ValueError, TypeError):  # unreadable, not JSON, not a count
        return None
    return (totals, stops) if stops else None


def gateway_figures(
    stopped: tuple[dict[str, int], int] | None, restarts: int | None, before_stop: dict
) -> tuple[dict, str]:
    """(what the gateway accepted, when it was read): its logged totals when every process of
    the run logged them (one more than its restarts: ``mbd up`` runs one gateway worker), else
    ``/metrics`` read before the stop."""
    if stopped is not None and stopped[1] == (restarts or 0) + 1:
        return stopped[0], "at its stop"
    return before_stop, "before the stop, phones still posting"
