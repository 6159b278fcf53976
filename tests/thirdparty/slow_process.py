"""A pygeoapi process that takes its time, so a job can be cancelled while pygeoapi runs it.

pygeoapi's built-in processes all finish at once; this one sleeps ``seconds`` (default 60) and then says so.
The server loads it by its dotted name, ``slow_process.SlowProcessor`` (``_serve_pygeoapi.py`` runs from this
directory, so it is importable there); the test process never imports it.
"""

from __future__ import annotations

import time
from typing import Any

from pygeoapi.process.base import BaseProcessor

PROCESS_METADATA = {
    "version": "0.1.0",
    "id": "slow",
    "title": {"en": "Slow"},
    "description": {"en": "Sleeps for the given number of seconds, then answers."},
    "jobControlOptions": ["sync-execute", "async-execute"],
    "keywords": ["test"],
    "inputs": {
        "seconds": {
            "title": "Seconds",
            "description": "how long to sleep",
            "schema": {"type": "number"},
            "minOccurs": 0,
            "maxOccurs": 1,
        }
    },
    "outputs": {
        "slept": {
            "title": "Slept",
            "description": "how long it slept",
            "schema": {"type": "object", "contentMediaType": "application/json"},
        }
    },
}


class SlowProcessor(BaseProcessor):
    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, PROCESS_METADATA)

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        seconds = float(data.get("seconds", 60))
        time.sleep(seconds)
        return "application/json", {"id": "slept", "value": seconds}
