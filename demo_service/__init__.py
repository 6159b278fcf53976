"""Demo job service: a real aiohttp server imitating a slow external job API, with fault injection.

Use :func:`running_demo_service` in tests and demos, or run ``python -m demo_service --port 8000``. Jobs
submitted with a ``callback_url`` are announced there when they end, signed with ``DEFAULT_WEBHOOK_SECRET``
unless another secret is given.
"""

from __future__ import annotations

from demo_service.app import (
    DEFAULT_ADMIN_KEY,
    DEFAULT_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    STATE_KEY,
    DemoService,
    DemoState,
    Fault,
    Job,
    create_app,
    running_demo_service,
    service_url,
)

__all__ = [
    "DEFAULT_ADMIN_KEY",
    "DEFAULT_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "STATE_KEY",
    "DemoService",
    "DemoState",
    "Fault",
    "Job",
    "create_app",
    "running_demo_service",
    "service_url",
]
