"""The longjobs command-line layer: connecting to Temporal, the worker, the starter commands and the demo."""

from longjobs._codec import CodecError, EncryptionCodec, codec_from_environ, new_key
from longjobs._connection import DEFAULT_ADDRESS, UserError, connect_client, connect_settings
from longjobs._entrypoint import EXIT_FAILED, EXIT_OK, EXIT_USAGE, run_command
from longjobs._worker import (
    MAX_CONCURRENT_ACTIVITIES,
    ensure_search_attributes,
    new_http_client,
    new_worker,
    run_worker,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_CONCURRENT_ACTIVITIES",
    "CodecError",
    "EncryptionCodec",
    "UserError",
    "codec_from_environ",
    "connect_client",
    "connect_settings",
    "ensure_search_attributes",
    "new_http_client",
    "new_key",
    "new_worker",
    "run_command",
    "run_worker",
]
