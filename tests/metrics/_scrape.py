"""Scraping a Prometheus endpoint and reading samples out of it, with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


async def scrape(http: httpx.AsyncClient, port: int) -> list[Sample]:
    """Every sample the endpoint serves right now, parsed (a malformed exposition fails the test here)."""
    response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` whose labels include ``labels``; None when there is none.

    The parser names every counter's samples ``..._total``: the SDK's ``temporal_request`` reads here as
    ``temporal_request_total`` (the project's counters are called so already).
    """
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


async def scrape_until(
    http: httpx.AsyncClient, port: int, condition: Callable[[list[Sample]], bool], what: str
) -> list[Sample]:
    """Scrape until ``condition`` holds (a bounded wait for a value, never a timing assertion)."""
    samples: list[Sample] = []
    for _ in range(200):
        try:
            samples = await scrape(http, port)
        except httpx.TransportError:
            samples = []  # not listening yet
        if condition(samples):
            return samples
        await asyncio.sleep(0.1)
    names = sorted({s.name for s in samples})
    pytest.fail(f"the metrics never showed {what}; names served: {names}")
