"""The ``LongRunningJob`` workflow, its input, state and result models."""

from workflows._job_workflow import JOB_STATE, LongRunningJob
from workflows._models import (
    TASK_QUEUE,
    WORKFLOW_TYPE,
    ErrorInfo,
    JobOptions,
    JobRequest,
    JobResult,
    JobState,
    JobStatus,
    NotifyTarget,
    ResumeInput,
    parse_duration,
)

__all__ = [
    "JOB_STATE",
    "TASK_QUEUE",
    "WORKFLOW_TYPE",
    "ErrorInfo",
    "JobOptions",
    "JobRequest",
    "JobResult",
    "JobState",
    "JobStatus",
    "LongRunningJob",
    "NotifyTarget",
    "ResumeInput",
    "parse_duration",
]
