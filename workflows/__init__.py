"""The ``LongRunningJob`` workflow, its input, state and result models."""

from workflows._job_workflow import JOB_API, JOB_STATE, SEARCH_ATTRIBUTE_KEYS, LongRunningJob
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
    "JOB_API",
    "JOB_STATE",
    "SEARCH_ATTRIBUTE_KEYS",
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
