"""``LongRunningJob``: submit a job to an external HTTP API once, then follow it until it ends.

The workflow makes every decision (when to wait, pause, fail, continue as new); activities only make HTTP
calls and classify what came back. All state lives in one :class:`JobStatus`, which the ``status`` query,
the ``JobState`` search attribute, notifications and continue-as-new all derive from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityHandle

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities import (
        ActionInput,
        AnalyzeInput,
        CancelJobInput,
        FetchResultInput,
        HttpOutcome,
        InterpretCallbackInput,
        JobApiActivities,
        NotificationInput,
        OutcomeClass,
        PollJobInput,
        ResolveSpecInput,
        SubmitJobInput,
        WatchJobInput,
    )
    from jobspec import ApiSpec, JobPhase
    from workflows._decisions import Fail, PauseForAuth, Proceed, RetryLater, apply_outcome
    from workflows._metrics import record_pause_ended, record_poll_outcome, record_state_change
    from workflows._models import (
        JobOptions,
        JobRequest,
        JobResult,
        JobState,
        JobStatus,
        ResumeInput,
    )

JOB_STATE = SearchAttributeKey.for_keyword("JobState")
JOB_API = SearchAttributeKey.for_keyword("JobApi")
SEARCH_ATTRIBUTE_KEYS = (JOB_STATE, JOB_API)

# An HTTP call is bounded by the spec's timeouts (at most 2 x read timeout); these leave room on top.
HTTP_ACTIVITY_TIMEOUT = timedelta(minutes=3)
# HTTP activities heartbeat while a request is in flight (or waits for its place): a worker killed mid-submit
# is noticed within this, not at the 3-minute timeout. Not much shorter: an overloaded worker starts and
# completes activities late, and at 15 s (tried at 2,000 jobs polled every second) submissions timed out,
# were retried and timed out again, so new jobs never started.
HTTP_HEARTBEAT_TIMEOUT = timedelta(seconds=60)
# Activities return classified outcomes instead of raising; Temporal's retries only cover a worker that died
# mid-call or a bug. A few quick tries, then the workflow counts it as a transient error.
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5
)
# Notifications are retried by Temporal with backoff beside the job, and never fail it.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)
NOTIFY_TIMEOUT = timedelta(minutes=10)
# How long the run stays open at the job's end for its last notifications to land (retries stop when it closes).
NOTIFY_GRACE = timedelta(minutes=2)
# A model's answer, a retry without structured output and one repair request, within one activity call (each
# HTTP call is bounded at 240 s).
ANALYZE_TIMEOUT = timedelta(minutes=13)
# The poll mode of jobs that do not choose one (README, Performance: what the benchmark favours). Changing it
# is a change of commands for new runs only: it is read behind workflow.patched, so running jobs keep theirs.
DEFAULT_POLL_MODE = "activity"
# The activity poll mode: how long a silent worker may go unnoticed, and how coarse progress reports are. With
# long poll intervals the timeout grows to two intervals (capped): every heartbeat is a server call, and at
# 10,000 jobs heartbeats every few seconds would cost the server more than the polls do. At 30 s, 2,000 jobs
# polled every second on 2 cores had their watch activities time out by the hundred (heartbeats reach a busy
# server late); at 60 s none did.
WATCH_HEARTBEAT_TIMEOUT = timedelta(seconds=60)
WATCH_HEARTBEAT_TIMEOUT_MAX = timedelta(minutes=5)
WATCH_PROGRESS_STEP = 10.0
# Callbacks kept while the workflow is busy; an API that calls back more often only needs the latest ones.
MAX_PENDING_CALLBACKS = 20
# The hand-over waits on a timer this short (see _continue_as_new_if_due); new runs only, behind the patch.
HAND_OVER_BARRIER = timedelta(milliseconds=1)
HAND_OVER_ON_TIMER_PATCH = "hand-over-on-timer"


def watch_heartbeat_timeout(poll_interval_seconds: float) -> timedelta:
    """The watch activity's heartbeat timeout: 60 s, or two poll intervals when longer, at most 5 minutes."""
    interval = timedelta(seconds=2 * poll_interval_seconds)
    return min(max(WATCH_HEARTBEAT_TIMEOUT, interval), WATCH_HEARTBEAT_TIMEOUT_MAX)


class _StepFailed(Exception):
    """A step gave up (an optional follow-up action): the caller decides whether that ends the job."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@workflow.defn(name="LongRunningJob", failure_exception_types=[ValidationError])
class LongRunningJob:
    """One external job, from submission to its end. Signal ``resume`` after fixing credentials."""

    @workflow.init
    def __init__(self, request: JobRequest) -> None:
        # The carried state is restored here, not in run(): signals that reach a new run before its first task
        # are handled before run() starts, and must count against the carried status, not a throw-away one.
        carried = request.carried_status
        self._status = JobStatus() if carried is None else carried.model_copy(update={"runs": carried.runs + 1})
        self._resume_requested = False
        self._publish_job_state = True
        self._callbacks: list[Any] = list(request.carried_callbacks)
        self._notifications: list[ActivityHandle[Any]] = []
        self._spec: ApiSpec | None = None
        self._notification_count = 0

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

    @workflow.signal
    def callback(self, payload: Any = None) -> None:
        """A verified callback from the API (sent by the callback receiver): a hint that the job changed."""
        if self._status.state.is_terminal:
            return
        self._status.callbacks_received += 1
        self._callbacks = [*self._callbacks, payload][-MAX_PENDING_CALLBACKS:]

    # -- the run --------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: JobRequest) -> JobResult:
        self._options = JobOptions.model_validate(request.model_dump(include=set(JobOptions.model_fields)))
        self._publish_job_state = request.publish_job_state
        self._request = request
        # Asked in the run's first task, where it is the same live and replayed (runs begun before the change
        # have no marker and keep the old commands).
        self._hand_over_on_timer = workflow.patched(HAND_OVER_ON_TIMER_PATCH)
        now = workflow.now()
        if request.carried_status is None:
            # Fill in the status __init__ made (a signal may already have counted on it).
            self._status.api = request.api
            self._status.started_at = now
            self._status.deadline = now + self._options.job_timeout
            self._publish_state(first=True)
        spec: ApiSpec | None = request.spec
        try:
            if spec is None:
                spec = await self._resolve_spec(request)
            self._spec = spec
            if self._options.completion != "poll" and spec.callback is None:
                self._fail(JobState.FAILED, "InvalidSpec",
                           f"API {spec.name!r} does not call back: use completion 'poll'")
            if self._status.job_id is None:
                await self._submit(spec, request)
                self._notify("submitted")
            result = await self._poll_until_done(spec, request)
            self._notify("succeeded", result=result.result)
            await self._drain_notifications()
            return result
        except BaseException as err:
            if is_cancelled_exception(err):
                await self._cancel_external_job(spec, reason="workflow cancelled")
                self._set_state(JobState.CANCELLED)
                self._notify("cancelled", error="the workflow was cancelled")
                await self._drain_notifications()
            elif isinstance(err, ApplicationError) and self._status.state.is_terminal:
                self._notify(self._status.state.value, error=f"{err.type}: {err.message}")
                await self._drain_notifications()
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
            callback=self._options.completion != "poll",
        )

        async def submit() -> HttpOutcome:
            self._status.submit_attempts += 1
            return await self._activity(JobApiActivities.submit_job, submit_input, summary=f"submit to {spec.name}")

        self._set_state(JobState.SUBMITTING)
        outcome = await self._until_success("submit", submit, first_wait=0)
        self._status.job_id = outcome.job_id
        self._status.status_url = outcome.status_url
        workflow.logger.info("submitted: job id %s", outcome.job_id)

    async def _poll_until_done(self, spec: ApiSpec, request: JobRequest) -> JobResult:
        job_id = self._status.job_id
        assert job_id is not None
        poll_input = PollJobInput(spec=spec, job_id=job_id, status_url=self._status.status_url)
        webhook_only = spec.callback is not None and spec.callback.webhook_only

        async def read_status() -> HttpOutcome:
            if webhook_only:
                if not self._callbacks:
                    # No status call to make: until a callback comes, the job is simply still running.
                    return HttpOutcome(
                        outcome=OutcomeClass.OK, phase=JobPhase.RUNNING, status_word="waiting for callback"
                    )
                # No status call to confirm with: the verified callback's body is the status.
                payload, self._callbacks = self._callbacks[0], self._callbacks[1:]
                body = payload.get("body") if isinstance(payload, dict) else payload
                return await workflow.execute_local_activity_method(
                    JobApiActivities.interpret_callback,
                    InterpretCallbackInput(spec=spec, body=body),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=ACTIVITY_RETRY,
                    summary="read callback",
                )
            # A callback is a hint: one GET confirms it before the job acts on it.
            self._callbacks = []
            self._status.poll_count += 1
            # A local activity: a short, idempotent GET costs about half the history events of an activity.
            # No summary: the activity type says it, and each summary is one more payload the worker converts
            # per poll, inside the sandbox (py-spy at 400 jobs: about 4% of the worker's samples went to summaries).
            return await workflow.execute_local_activity_method(
                JobApiActivities.poll_job,
                poll_input,
                start_to_close_timeout=HTTP_ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )

        poll_mode = self._poll_mode()
        # The activity mode waits inside the activity: this is the wait its next call starts with (0 when
        # the workflow has just waited itself, after an error).
        activity_wait = [0.0]
        last_phase: list[JobPhase | None] = [None]

        async def watch() -> HttpOutcome:
            deadline = self._status.deadline
            assert deadline is not None
            budget = None if self._options.max_polls is None else self._options.max_polls - self._status.poll_count
            watch_input = WatchJobInput(
                spec=spec, job_id=job_id, status_url=self._status.status_url,
                poll_interval_seconds=self._options.poll_interval_seconds, first_wait_seconds=activity_wait[0],
                last_phase=last_phase[0], last_progress=self._status.progress, progress_step=WATCH_PROGRESS_STEP,
                max_polls=budget, deadline=deadline,
            )
            activity_wait[0] = 0.0
            outcome = await self._activity(
                JobApiActivities.watch_job, watch_input, summary="watch job",
                start_to_close_timeout=max(deadline - workflow.now(), timedelta(0)) + HTTP_ACTIVITY_TIMEOUT,
                heartbeat_timeout=watch_heartbeat_timeout(self._options.poll_interval_seconds),
            )
            self._status.poll_count += outcome.polls
            return outcome

        async def before_wait() -> None:
            if poll_mode == "activity" and self._status.deadline and workflow.now() >= self._status.deadline:
                await self._time_out(spec, f"job did not finish within {self._options.job_timeout}")
            await self._continue_as_new_if_due(spec, request)
            if self._options.max_polls is not None and self._status.poll_count >= self._options.max_polls:
                await self._time_out(spec, f"job {job_id} still not finished after {self._status.poll_count} polls")

        resuming_backoff = self._status.state is JobState.RATE_LIMITED and bool(self._status.current_backoff_seconds)
        if not resuming_backoff:
            self._set_state(JobState.POLLING)
        first_wait = self._status.current_backoff_seconds if resuming_backoff else self._quiet_wait(webhook_only)
        while True:
            if poll_mode == "activity":
                activity_wait[0], first_wait = first_wait or 0.0, 0.0
            outcome = await self._until_success(
                "poll", watch if poll_mode == "activity" else read_status, first_wait=first_wait or 0,
                before_wait=before_wait,
            )
            first_wait = self._quiet_wait(webhook_only)
            last_phase[0] = outcome.phase
            if outcome.progress is not None:
                self._status.progress = outcome.progress
            self._status.status_word = outcome.status_word
            if outcome.warning:
                self._status.warning = outcome.warning
            match outcome.phase:
                case JobPhase.SUCCEEDED:
                    return await self._succeed(spec, job_id, outcome, request)
                case JobPhase.FAILED:
                    reason = outcome.job_error or "no reason given"
                    self._fail(JobState.FAILED, "JobFailed", f"job {job_id} failed: {reason}")
                case JobPhase.CANCELLED:
                    reason = outcome.job_error or "no reason given"
                    message = f"job {job_id} was cancelled outside this workflow: {reason}"
                    self._fail(JobState.CANCELLED, "JobCancelled", message)
                case _:
                    self._set_state(JobState.POLLING)

    def _poll_mode(self) -> str:
        """``timer`` or ``activity``: the job's choice, else the default (callbacks always use timers)."""
        if self._options.completion != "poll":
            return "timer"
        if self._options.poll_mode is not None:
            return self._options.poll_mode
        if DEFAULT_POLL_MODE != "timer" and workflow.patched("default-poll-mode-activity"):
            return DEFAULT_POLL_MODE
        return "timer"

    def _quiet_wait(self, webhook_only: bool) -> float:
        """How long to wait while nothing happens: the poll interval, the fallback interval, or the deadline."""
        match self._options.completion:
            case "poll":
                return self._options.poll_interval_seconds
            case "hybrid" if not webhook_only:
                return self._options.callback_fallback_poll_seconds
            case _:
                # Callback only: no polling at all; the job timeout is the callback wait's deadline.
                return self._options.job_timeout.total_seconds()

    async def _succeed(self, spec: ApiSpec, job_id: str, outcome: HttpOutcome, request: JobRequest) -> JobResult:
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
        actions, action_errors = await self._run_actions(request, job_id, result)
        analysis, analysis_error, trimmed = await self._analyze(spec, request, result)
        self._set_state(JobState.SUCCEEDED)
        return JobResult(
            analysis=analysis,
            analysis_error=analysis_error,
            analysis_trimmed_chars=trimmed,
            job_id=job_id,
            state=JobState.SUCCEEDED,
            result=result,
            poll_count=self._status.poll_count,
            total_error_count=self._status.total_error_count,
            runs=self._status.runs,
            actions=actions,
            action_errors=action_errors,
        )

    async def _run_actions(
        self, request: JobRequest, job_id: str, result: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Follow-up calls with the result; an optional one that fails is recorded, a required one fails the job."""
        answers: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for action in request.actions:
            action_input = ActionInput(action=action, result=result, job_input=request.input, job_id=job_id)

            async def call(action_input: ActionInput = action_input) -> HttpOutcome:
                return await self._activity(
                    JobApiActivities.run_action, action_input, summary=f"action {action_input.action.name}"
                )

            try:
                outcome = await self._until_success(f"action {action.name}", call, first_wait=0, fatal=False)
            except _StepFailed as err:
                if action.required:
                    self._fail(JobState.FAILED, "ActionFailed", f"required action {action.name!r}: {err}")
                errors[action.name] = str(err)
                continue
            answers[action.name] = outcome.result
        return answers, errors

    async def _analyze(
        self, spec: ApiSpec, request: JobRequest, result: Any
    ) -> tuple[dict[str, Any] | None, str | None, int]:
        """The optional analysis by a language model: (analysis, why there is none, characters trimmed).

        It never costs the job its result: when it finally fails, the job succeeds with an analysis_error.
        """
        config = request.analyze or spec.analyze
        if config is None:
            return None, None, 0
        analyze_input = AnalyzeInput(spec=config, job_input=request.input, result=result)
        try:
            outcome = await self._until_success(
                "analyze",
                lambda: self._activity(
                    JobApiActivities.analyze_result, analyze_input, summary="analyze result",
                    start_to_close_timeout=ANALYZE_TIMEOUT,
                ),
                first_wait=0,
                fatal=False,
            )
        except _StepFailed as err:
            return None, str(err), 0
        if not isinstance(outcome.result, dict):
            return None, outcome.message or "no analysis", 0
        return outcome.result["analysis"], None, int(outcome.result.get("trimmed_chars", 0))

    # -- the step loop: call, classify, wait / pause / fail, repeat -----------------------------------------

    async def _until_success(
        self,
        step: str,
        call: Callable[[], Awaitable[HttpOutcome]],
        *,
        first_wait: float,
        before_wait: Callable[[], Awaitable[None]] | None = None,
        fatal: bool = True,
    ) -> HttpOutcome:
        """Make ``call`` until it succeeds, acting on each failure as the outcome table says.

        When the step gives up, it fails the job, or (``fatal=False``) raises :class:`_StepFailed`.
        """
        wait = first_wait
        while True:
            if before_wait is not None:
                await before_wait()
            if wait > 0:
                await self._wait(wait, step=step, fatal=fatal)
            outcome = await call()
            if step == "poll":
                record_poll_outcome(outcome.outcome, api=self._status.api, polls=outcome.polls)
            decision = apply_outcome(self._status, outcome, self._options, step=step, now=workflow.now())
            match decision:
                case Proceed():
                    return outcome
                case RetryLater(seconds=seconds, state=state):
                    self._set_state(state)
                    wait = seconds
                case PauseForAuth():
                    await self._pause_for_auth(step, fatal=fatal)
                    wait = 0  # retry the same step at once, with the same job id
                case Fail(error_type=error_type, message=message):
                    if not fatal:
                        raise _StepFailed(error_type, message)
                    self._fail(JobState.FAILED, error_type, message)

    async def _wait(self, seconds: float, *, step: str = "poll", fatal: bool = True) -> None:
        """A durable timer, cut short by the job deadline or by a callback.

        At the deadline the job times out; a step that is not fatal (after success) only gives up.
        """
        now = workflow.now()
        deadline = self._status.deadline
        assert deadline is not None
        remaining = (deadline - now).total_seconds()
        if remaining <= 0:
            await self._deadline_reached(step, fatal)
        seconds = min(seconds, remaining)
        self._status.next_poll_time = now + timedelta(seconds=seconds)
        # Waits that say something (a backoff, a rate limit) carry a summary for the UI; the steady poll wait,
        # the hot path of the timer mode, goes without one (see read_status).
        summary = None if self._status.state is JobState.POLLING else f"{self._status.state.value}: wait {seconds:g}s"
        if self._options.completion == "poll":
            await workflow.sleep(seconds, summary=summary)
        else:
            try:
                await workflow.wait_condition(lambda: bool(self._callbacks), timeout=seconds, timeout_summary=summary)
            except TimeoutError:
                pass
        if not self._callbacks and workflow.now() >= deadline:
            await self._deadline_reached(step, fatal)

    async def _deadline_reached(self, step: str, fatal: bool) -> NoReturn:
        message = f"job did not finish within {self._options.job_timeout}"
        if not fatal:
            raise _StepFailed("PollTimeout", f"{message} ({step} gave up; the job itself succeeded)")
        await self._time_out(self._spec, message)

    async def _pause_for_auth(self, step: str, *, fatal: bool = True) -> None:
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
        self._notify("auth_paused", error=self._status.last_error.message if self._status.last_error else None)
        try:
            await workflow.wait_condition(
                lambda: self._resume_requested,
                timeout=self._options.auth_pause_timeout,
                timeout_summary="auth pause timeout",
            )
        except TimeoutError:
            waited = workflow.now() - self._status.paused_since
            record_pause_ended(waited.total_seconds(), api=self._status.api, outcome="timed_out")
            error = self._status.last_error
            last = f"HTTP {error.http_status}: {error.message}" if error and error.http_status else (
                error.message if error else "")
            message = f"credentials were not fixed within {self._options.auth_pause_timeout} ({step}: {last})"
            if not fatal:
                # A step after success (an action, the analysis) gives up; the job keeps its result.
                self._status.paused_since = None
                self._set_state(before)
                raise _StepFailed("AuthPauseTimeout", message) from None
            self._fail(JobState.FAILED, "AuthPauseTimeout", message)
        paused_for = workflow.now() - self._status.paused_since
        record_pause_ended(paused_for.total_seconds(), api=self._status.api, outcome="resumed")
        if self._status.deadline is not None:
            self._status.deadline += paused_for
        self._status.paused_since = None
        self._resume_requested = False
        self._set_state(before if before is not JobState.AUTH_PAUSED else JobState.POLLING)
        workflow.logger.info("resumed after %s", paused_for)

    async def _continue_as_new_if_due(self, spec: ApiSpec, request: JobRequest) -> None:
        info = workflow.info()
        # Past history_events_per_run (8,000 by default, well under the 10,240-event warning) a run hands over
        # even if the server has not suggested it: servers can be configured to suggest late or never.
        length = info.get_current_history_length()
        if not (info.is_continue_as_new_suggested() or length > self._options.history_events_per_run):
            return
        if self._hand_over_on_timer:
            # Decide the hand-over on a timer's firing, not on a local activity's result. The SDK can record a
            # poll's result in one workflow task and hand it to this code in the next; replayed, the result comes
            # a task earlier. So when the server refused a hand-over for a signal that came meanwhile and the task
            # ran again from history, this code reached continue_as_new before that signal was applied, and the
            # signal's count stayed behind in the old run. A timer fires in the task that records it, live and
            # replayed, together with (and after) the signals of that task.
            await workflow.sleep(HAND_OVER_BARRIER)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._drain_notifications()
        workflow.logger.info("continuing as new after %d events", length)
        workflow.continue_as_new(
            request.model_copy(
                update={
                    "spec": spec,
                    "carried_status": self._status.model_copy(deep=True),
                    "carried_callbacks": list(self._callbacks),
                }
            )
        )

    # -- notifications --------------------------------------------------------------------------------------

    def _notify(self, event: str, *, result: Any = None, error: str | None = None) -> None:
        """Start the notifications for ``event``; they run beside the job, retried, and never fail it."""
        targets = [t for t in self._request.notify if event in t.events]
        if not targets:
            return
        info = workflow.info()
        payload: dict[str, Any] = {
            "event": event,
            "workflow_id": info.workflow_id,
            "api": self._status.api,
            "job_id": self._status.job_id,
            "state": self._status.state.value,
            "poll_count": self._status.poll_count,
            "total_error_count": self._status.total_error_count,
            "at": workflow.now().isoformat(),
        }
        if result is not None:
            payload["result"] = result
        if error:
            payload["error"] = error
        if event == "auth_paused":
            payload["resume_command"] = f"python starter.py resume {info.workflow_id}"
            payload["resume_command_temporal_cli"] = (
                f"temporal workflow signal --workflow-id {info.workflow_id} --name resume"
            )
        for target in targets:
            self._notification_count += 1
            # One id per message, the same on every retry of it: receivers deduplicate by it.
            message_id = f"{info.workflow_id}:{info.run_id}:{self._notification_count}"
            self._notifications.append(
                workflow.start_activity_method(
                    JobApiActivities.send_notification,
                    NotificationInput(url=target.url, event=event, payload=payload, message_id=message_id),
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=NOTIFY_TIMEOUT,
                    retry_policy=NOTIFY_RETRY,
                    summary=f"notify {event}",
                )
            )

    async def _drain_notifications(self) -> None:
        """Give notifications in flight a bounded time to land before the run ends; failures are only logged."""
        pending, self._notifications = self._notifications, []
        if not pending:
            return
        done, still_pending = await workflow.wait(pending, timeout=NOTIFY_GRACE.total_seconds())
        for task in done:
            if task.exception() is not None:
                workflow.logger.warning("a notification was not delivered: %s", task.exception())
        if still_pending:
            workflow.logger.warning("%d notifications still retrying when the job ended", len(still_pending))

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

    async def _activity(
        self,
        method: Any,
        arg: Any,
        *,
        summary: str,
        start_to_close_timeout: timedelta = HTTP_ACTIVITY_TIMEOUT,
        heartbeat_timeout: timedelta = HTTP_HEARTBEAT_TIMEOUT,
    ) -> HttpOutcome:
        """Run an HTTP activity; if even Temporal's retries give up (a bug, a dead worker), it is transient."""
        try:
            outcome: HttpOutcome = await workflow.execute_activity_method(
                method, arg, start_to_close_timeout=start_to_close_timeout, heartbeat_timeout=heartbeat_timeout,
                retry_policy=ACTIVITY_RETRY, summary=summary,
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
            record_state_change(self._status.state, state, api=self._status.api)
            self._status.state = state
            self._publish_state()

    def _publish_state(self, *, first: bool = False) -> None:
        if self._publish_job_state:
            updates = [JOB_STATE.value_set(self._status.state.value)]
            if first:
                # In the same upsert as the first JobState: one command either way, so histories still replay.
                updates.append(JOB_API.value_set(self._status.api))
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(f"state: {self._status.state.value}; job id: {self._status.job_id or '-'}")
