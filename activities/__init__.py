"""HTTP activities for job APIs, and the classification of every HTTP outcome.

Import this package from workflow code only inside ``workflow.unsafe.imports_passed_through()``: it imports
httpx, which the workflow sandbox rejects.
"""

from activities._analysis import Analysis, AnalyzeInput
from activities._credentials import CredentialMissing, read_secret
from activities._job_api import (
    MAX_REQUESTS_IN_FLIGHT,
    ActionInput,
    CancelJobInput,
    FetchResultInput,
    InterpretCallbackInput,
    JobApiActivities,
    NotificationInput,
    PollJobInput,
    ResolveSpecInput,
    SubmitJobInput,
    WatchJobInput,
)
from activities._outcome import (
    HttpOutcome,
    OutcomeClass,
    classify_status_code,
    error_outcome,
    exception_outcome,
    parse_retry_after,
)

__all__ = [
    "MAX_REQUESTS_IN_FLIGHT",
    "ActionInput",
    "Analysis",
    "AnalyzeInput",
    "CancelJobInput",
    "CredentialMissing",
    "FetchResultInput",
    "HttpOutcome",
    "InterpretCallbackInput",
    "JobApiActivities",
    "NotificationInput",
    "OutcomeClass",
    "PollJobInput",
    "ResolveSpecInput",
    "SubmitJobInput",
    "WatchJobInput",
    "classify_status_code",
    "error_outcome",
    "exception_outcome",
    "parse_retry_after",
    "read_secret",
]
