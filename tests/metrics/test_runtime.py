"""The metrics runtime on its own: the address it binds and the errors a user can fix."""

from __future__ import annotations

import socket

import pytest

from longjobs import UserError
from longjobs._metrics import bind_address, metrics_runtime, paused_jobs_query


def test_bind_address_brackets_ipv6() -> None:
    assert bind_address("127.0.0.1", 9464) == "127.0.0.1:9464"
    assert bind_address("0.0.0.0", 9464) == "0.0.0.0:9464"
    assert bind_address("::", 9464) == "[::]:9464"
    assert bind_address("[::1]", 9464) == "[::1]:9464"


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_port_out_of_range_is_a_user_error(port: int) -> None:
    with pytest.raises(UserError, match="between 1 and 65535"):
        metrics_runtime(port)


def test_a_port_in_use_is_a_user_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"^cannot serve metrics on 127\.0\.0\.1:{port}: .*in use"):
            metrics_runtime(port)


def test_paused_jobs_query_quotes_the_task_queue() -> None:
    query = paused_jobs_query('odd"queue')
    assert query.endswith('TaskQueue="odd\\"queue"')
    assert "JobState='auth_paused'" in query and "ExecutionStatus='Running'" in query
