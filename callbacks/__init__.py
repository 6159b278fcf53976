"""Webhooks in and out: the callback receiver that turns verified callbacks into ``callback`` signals, and the
Standard Webhooks signing used both to verify callbacks and to sign outbound notifications."""

from callbacks._receiver import ReceiverSettings, RunningReceiver, create_receiver_app, running_receiver
from callbacks._signing import (
    SignatureError,
    callback_token,
    callback_url,
    new_secret,
    read_secret_setting,
    sign,
    signed_headers,
    token_matches,
    verify,
)

__all__ = [
    "ReceiverSettings",
    "RunningReceiver",
    "SignatureError",
    "callback_token",
    "callback_url",
    "create_receiver_app",
    "new_secret",
    "read_secret_setting",
    "running_receiver",
    "sign",
    "signed_headers",
    "token_matches",
    "verify",
]
