"""``LongRunningJob``: submit a job to an external HTTP API once, then poll it until it ends.

The workflow makes every decision (when to wait, pause, fail, continue as new); activities only make HTTP
calls and classify what came back. All state lives in one :class:`JobStatus`, which the ``status`` query,
the ``JobState`` search attribute and continue-as-new all derive from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities import (
        CancelJobInput,
        FetchResultInput,
        HttpOutcome,
        JobApiActivities,
        OutcomeClass,
        PollJobInput,
        ResolveSpecInput,
        SubmitJobInput,
    )
    from jobspec import ApiSpec, JobPhase
    from workflows._decisions import Fail, PauseForAuth, Proceed, RetryLater, apply_outcome
    from workflows._models import (
        JobOptions,
        JobRequest,
        JobResult,
        JobState,
        JobStatus,
        ResumeInput,
    )

JOB_STATE = SearchAttributeKey.for_keyword("JobState")

# An HTTP call is bounded by the spec's timeouts (at most 2 x read timeout); these leave room on top.
HTTP_ACTIVITY_TIMEOUT = timedelta(minutes=3)
# Activities return classified outcomes instead of raising; Temporal's retries only cover a worker that died
# mid-call or a bug. A few quick tries, then the workflow counts it as a transient error.
ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                             maximum_attempts=5)
# Past this many events a run hands over to a new one even if the server has not suggested it yet; well
# under the 10,240-event warning.
MAX_EVENTS_PER_RUN = 8_000


@workflow.defn(name="LongRunningJob", failure_exception_types=[ValidationError])
class LongRunningJob:
    """One external job, from submission to its end. Signal ``resume`` after fixing credentials."""

    def __init__(self) -> None:
        self._status = JobStatus()
        self._resume_requested = False
        self._publish_job_state = True

    # -- messages -------------------------------------------------------------------------------------------

    @workflow.query
    def status(self) -> JobStatus:
        """State, job id, counters, last error, backoff, next poll time and progress."""
        return self._status

    @workflow.signal
    def resume(self, payload: Any = None) -> None:
        """Continue an ``auth_paused`` job after its credentials were fixed; ignored in any other state.

        The payload is optional: nothing, a note as a string, or ``{"note": "..."}``. It is typed loosely on
        purpose: a signal whose payload fails to decode is dropped by the SDK, and a person who typed the
        note a little differently must not be left with a job that silently stays paused.
        """
        note = payload if isinstance(payload, str) else None
        if isinstance(payload, dict):
            note = ResumeInput.model_validate({"note": str(payload.get("note") or "") or None}).note
        if self._status.state is not JobState.AUTH_PAUSED:
            workflow.logger.info("resume ignored: job is %s, not auth_paused", self._status.state.value)
            return
        self._resume_requested = True
        self._status.resume_note = note

    # -- the run --------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: JobRequest) -> JobResult:
        self._options = JobOptions.model_validate(request.model_dump(include=set(JobOptions.model_fields)))
        self._publish_job_state = request.publish_job_state
        now = workflow.now()
        if request.carried_status is not None:
            self._status = request.carried_status.model_copy(update={"runs": request.carried_status.runs + 1})
        else:
            self._status = JobStatus(
                api=request.api, started_at=now, deadline=now + self._options.job_timeout
            )
            self._publish_state()
        spec: ApiSpec | None = request.spec
        try:
            if spec is None:
                spec = await self._resolve_spec(request)
            if self._status.job_id is None:
                await self._submit(spec, request)
            return await self._poll_until_done(spec, request)
        except BaseException as err:
            if is_cancelled_exception(err):
                await self._cancel_external_job(spec, reason="workflow cancelled")
                self._set_state(JobState.CANCELLED)
            raise

    async def _resolve_spec(self, request: JobRequest) -> ApiSpec:
        try:
            return await workflow.execute_activity_method(
                JobApiActivities.resolve_spec,
                ResolveSpecInput(api=request.api, variables=request.variables),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=ACTIVITY_RETRY,
                summary=f"resolve API spec {request.api!r}",
            )
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            self._fail(JobState.FAILED, "InvalidSpec", message)

    async def _submit(self, spec: ApiSpec, request: JobRequest) -> None:
        info = workflow.info()
        # Same key on every retry of this job, new key for a new job that reuses the workflow id.
        submit_input = SubmitJobInput(
            spec=spec,
            job_input=request.input,
            idempotency_key=f"longjobs:{info.workflow_id}:{info.first_execution_run_id}",
            workflow_id=info.workflow_id,
        )

        async def submit() -> HttpOutcome:
            self._status.submit_attempts += 1
            return await self._activity(
                JobApiActivities.submit_job, submit_input, summary=f"submit to {spec.name}"
            )

        self._set_state(JobState.SUBMITTING)
        outcome = await self._until_success("submit", submit, first_wait=0)
        self._status.job_id = outcome.job_id
        self._status.status_url = outcome.status_url
        workflow.logger.info("submitted: job id %s", outcome.job_id)

    async def _poll_until_done(self, spec: ApiSpec, request: JobRequest) -> JobResult:
        job_id = self._status.job_id
        assert job_id is not None
        poll_input = PollJobInput(spec=spec, job_id=job_id, status_url=self._status.status_url)

        async def poll() -> HttpOutcome:
            if self._options.max_polls is not None and self._status.poll_count >= self._options.max_polls:
                await self._time_out(spec, f"job {job_id} still not finished after {self._status.poll_count} polls")
            self._status.poll_count += 1
            # A local activity: a short, idempotent GET costs about half the history events of an activity.
            return await workflow.execute_local_activity_method(
                JobApiActivities.poll_job,
                poll_input,
                start_to_close_timeout=HTTP_ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary="poll",
            )

        if self._status.state in (JobState.SUBMITTING, JobState.AUTH_PAUSED):
            self._set_state(JobState.POLLING)
        first_wait = (
            self._status.current_backoff_seconds
            if self._status.state is JobState.RATE_LIMITED and self._status.current_backoff_seconds
            else self._options.poll_interval_seconds
        )
        while True:
            outcome = await self._until_success("poll", poll, first_wait=first_wait, spec=spec, request=request)
            first_wait = self._options.poll_interval_seconds
            self._status.progress = outcome.progress if outcome.progress is not None else self._status.progress
            self._status.status_word = outcome.status_word
            if outcome.warning:
                self._status.warning = outcome.warning
            match outcome.phase:
                case JobPhase.SUCCEEDED:
                    return await self._succeed(spec, job_id, outcome)
                case JobPhase.FAILED:
                    reason = outcome.job_error or "no reason given"
                    self._fail(JobState.FAILED, "JobFailed", f"job {job_id} failed: {reason}")
                case JobPhase.CANCELLED:
                    reason = outcome.job_error or "no reason given"
                    message = f"job {job_id} was cancelled outside this workflow: {reason}"
                    self._fail(JobState.CANCELLED, "JobCancelled", message)
                case _:
                    self._set_state(JobState.POLLING)

    async def _succeed(self, spec: ApiSpec, job_id: str, outcome: HttpOutcome) -> JobResult:
        result = outcome.result
        if spec.result is not None:
            fetch_input = FetchResultInput(spec=spec, job_id=job_id, result_ref=outcome.result_ref)
            fetched = await self._until_success(
                "fetch result",
                lambda: self._activity(JobApiActivities.fetch_result, fetch_input, summary="fetch result"),
                first_wait=0,
            )
            result = fetched.result
        self._status.progress = 100.0
        self._status.next_poll_time = None
        self._set_state(JobState.SUCCEEDED)
        return JobResult(
            job_id=job_id,
            state=JobState.SUCCEEDED,
            result=result,
            poll_count=self._status.poll_count,
            total_error_count=self._status.total_error_count,
            runs=self._status.runs,
        )

    # -- the step loop: call, classify, wait / pause / fail, repeat -----------------------------------------

    async def _until_success(
        self,
        step: str,
        call: Callable[[], Awaitable[HttpOutcome]],
        *,
        first_wait: float,
        spec: ApiSpec | None = None,
        request: JobRequest | None = None,
    ) -> HttpOutcome:
        """Make ``call`` until it succeeds, acting on each failure as the outcome table says."""
        wait = first_wait
        while True:
            if spec is not None and request is not None:
                await self._continue_as_new_if_due(spec, request)
            if wait > 0:
                await self._sleep(wait, spec)
            outcome = await call()
            decision = apply_outcome(self._status, outcome, self._options, step=step, now=workflow.now())
            match decision:
                case Proceed():
                    return outcome
                case RetryLater(seconds=seconds, state=state):
                    self._set_state(state)
                    wait = seconds
                case PauseForAuth():
                    await self._pause_for_auth(step)
                    wait = 0  # retry the same step at once, with the same job id
                case Fail(error_type=error_type, message=message):
                    self._fail(JobState.FAILED, error_type, message)

    async def _sleep(self, seconds: float, spec: ApiSpec | None) -> None:
        """A durable timer, cut short by the job deadline (which then times the job out)."""
        now = workflow.now()
        deadline = self._status.deadline
        assert deadline is not None
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            await self._time_out(spec, f"job did not finish within {self._options.job_timeout}")
        seconds = min(seconds, remaining)
        self._status.next_poll_time = now + timedelta(seconds=seconds)
        await workflow.sleep(seconds, summary=f"{self._status.state.value}: wait {seconds:g}s")
        if workflow.now() >= deadline:
            await self._time_out(spec, f"job did not finish within {self._options.job_timeout}")

    async def _pause_for_auth(self, step: str) -> None:
        """Wait for ``resume``; the time paused does not count against the job timeout."""
        before = self._status.state
        self._resume_requested = False
        self._status.paused_since = workflow.now()
        self._status.next_poll_time = None
        self._set_state(JobState.AUTH_PAUSED)
        workflow.logger.warning(
            "paused for credentials at %s: %s; fix them, then signal resume",
            step,
            self._status.last_error.message if self._status.last_error else "",
        )
        try:
            await workflow.wait_condition(
                lambda: self._resume_requested,
                timeout=self._options.auth_pause_timeout,
                timeout_summary="auth pause timeout",
            )
        except TimeoutError:
            last = self._status.last_error.message if self._status.last_error else ""
            self._fail(
                JobState.FAILED,
                "AuthPauseTimeout",
                f"credentials were not fixed within {self._options.auth_pause_timeout} ({step}: {last})",
            )
        paused_for = workflow.now() - self._status.paused_since
        if self._status.deadline is not None:
            self._status.deadline += paused_for
        self._status.paused_since = None
        self._resume_requested = False
        self._set_state(before if before is not JobState.AUTH_PAUSED else JobState.POLLING)
        workflow.logger.info("resumed after %s", paused_for)

    async def _continue_as_new_if_due(self, spec: ApiSpec, request: JobRequest) -> None:
        info = workflow.info()
        if not (info.is_continue_as_new_suggested() or info.get_current_history_length() > MAX_EVENTS_PER_RUN):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("continuing as new after %d events", info.get_current_history_length())
        workflow.continue_as_new(
            request.model_copy(update={"spec": spec, "carried_status": self._status.model_copy(deep=True)})
        )

    # -- endings --------------------------------------------------------------------------------------------

    async def _time_out(self, spec: ApiSpec | None, message: str) -> NoReturn:
        self._status.next_poll_time = None
        await self._cancel_external_job(spec, reason="timed out")
        self._fail(JobState.TIMED_OUT, "PollTimeout", message)

    def _fail(self, state: JobState, error_type: str, message: str) -> NoReturn:
        self._status.next_poll_time = None
        self._set_state(state)
        raise ApplicationError(message, type=error_type, non_retryable=True)

    async def _cancel_external_job(self, spec: ApiSpec | None, *, reason: str) -> None:
        """One best-effort cancel call; its outcome is logged, never fatal."""
        job_id = self._status.job_id
        if spec is None or job_id is None or spec.cancel is None:
            return
        try:
            outcome = await workflow.execute_activity_method(
                JobApiActivities.cancel_job,
                CancelJobInput(spec=spec, job_id=job_id),
                start_to_close_timeout=HTTP_ACTIVITY_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=f"cancel job ({reason})",
            )
        except ActivityError as err:
            workflow.logger.warning("cancelling job %s failed: %s", job_id, err)
            return
        if outcome.outcome is OutcomeClass.OK:
            workflow.logger.info("cancelled job %s (%s)", job_id, reason)
        else:
            workflow.logger.warning("cancelling job %s: %s %s", job_id, outcome.outcome.value, outcome.message)

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _activity(self, method: Any, arg: Any, *, summary: str) -> HttpOutcome:
        """Run an HTTP activity; if even Temporal's retries give up (a bug, a dead worker), it is transient."""
        try:
            outcome: HttpOutcome = await workflow.execute_activity_method(
                method, arg, start_to_close_timeout=HTTP_ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY, summary=summary
            )
            return outcome
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                return HttpOutcome(outcome=OutcomeClass.PERMANENT, message=cause.message)
            return HttpOutcome(outcome=OutcomeClass.TRANSIENT, message=f"activity failed: {cause or err}")

    def _set_state(self, state: JobState) -> None:
        if state is not self._status.state:
            self._status.state = state
            self._publish_state()

    def _publish_state(self) -> None:
        if self._publish_job_state:
            workflow.upsert_search_attributes([JOB_STATE.value_set(self._status.state.value)])
        workflow.set_current_details(f"state: {self._status.state.value}; job id: {self._status.job_id or '-'}")

