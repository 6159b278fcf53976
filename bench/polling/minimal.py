"""The minimal Temporal polling loop: a bare workflow doing the same HTTP call and the same durable timer.

``MinimalPollLoop`` loops: one local activity GETs the job's status (the same bearer-authenticated request to
the same URL as the project's ``poll_job``, through ``longjobs.new_http_client()``), then ``workflow.sleep``.
No spec, no outcome classification, no state, query or search attribute: what any Temporal user would write
first, with the SDK's defaults (JSON data converter, sandboxed workflow runner). It ends when the job does, and
continues as new when the server suggests it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

if TYPE_CHECKING:
    import httpx

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class PollInput:
    url: str


@dataclass
class PollResult:
    status: str
    progress: float | None = None


@dataclass
class LoopInput:
    url: str
    interval_seconds: float


class MinimalActivities:
    """The one activity; the credential lives on the worker, as in the project."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    @activity.defn(name="minimal_poll")
    async def poll(self, input: PollInput) -> PollResult:
        response = await self._http.get(input.url, headers=self._headers)
        response.raise_for_status()
        body = response.json()
        return PollResult(status=str(body["status"]), progress=body.get("progress"))


@workflow.defn(name="MinimalPollLoop")
class MinimalPollLoop:
    @workflow.run
    async def run(self, input: LoopInput) -> PollResult:
        while True:
            result = await workflow.execute_local_activity_method(
                MinimalActivities.poll,
                PollInput(url=input.url),
                start_to_close_timeout=timedelta(minutes=3),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            if result.status in TERMINAL:
                return result
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(input)
            await workflow.sleep(input.interval_seconds)
