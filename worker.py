"""Run a longjobs worker: ``python worker.py [--task-queue NAME]``.

Connects with Temporal's env-config (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_PROFILE``, TLS
and API key settings). Stop it with Ctrl-C or SIGTERM: it finishes in-flight tasks and exits 0. Add more
workers on the same task queue (on any machine) to share the load.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    """A stop asked for while the worker is still starting (imports, connecting) is a clean stop too: exit 0.

    Nothing is in flight yet, so leave at once. Raising SystemExit here instead would surface wherever the
    signal lands, and inside an extension (pydantic building a schema during an import) it became an error
    and exit 1 (3 of 200 early stops in a stress run). Once running, the worker's own handlers take over and
    drain in-flight tasks first.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: the signal interrupted a write to it
            pass
    os._exit(0)


signal.signal(signal.SIGTERM, _stop_while_starting)

import argparse  # noqa: E402
import logging  # noqa: E402

from activities import MAX_REQUESTS_IN_FLIGHT  # noqa: E402
from longjobs import MAX_CONCURRENT_ACTIVITIES, run_command, run_worker  # noqa: E402
from workflows import TASK_QUEUE  # noqa: E402


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", default=TASK_QUEUE, help="task queue to poll (default: %(default)s)")
    parser.add_argument(
        "--callbacks-port", type=int, metavar="PORT",
        help="also run the callback receiver on this port (needs CALLBACK_SECRET; for --completion callback/hybrid)",
    )
    parser.add_argument("--callbacks-host", default="127.0.0.1", help="address of the callback receiver")
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT",
        help="serve Prometheus metrics (the SDK's and the jobs') at http://HOST:PORT/metrics",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics endpoint")
    parser.add_argument(
        "--max-concurrent-activities", type=positive_int, default=MAX_CONCURRENT_ACTIVITIES, metavar="N",
        help="activities at once; in the activity poll mode, jobs this worker follows at once (default: %(default)s)",
    )
    parser.add_argument(
        "--max-requests-in-flight", type=positive_int, default=MAX_REQUESTS_IN_FLIGHT, metavar="N",
        help="HTTP requests at once, all jobs together; more wait their turn (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request would drown the log at any volume; the workflow logs what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_command(
        run_worker(
            task_queue=args.task_queue, callbacks_port=args.callbacks_port, callbacks_host=args.callbacks_host,
            metrics_port=args.metrics_port, metrics_host=args.metrics_host,
            max_concurrent_activities=args.max_concurrent_activities,
            max_requests_in_flight=args.max_requests_in_flight,
        ),
        prog="worker.py",
    )


if __name__ == "__main__":
    main()
