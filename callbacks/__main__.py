"""Command line entry point: ``python -m callbacks --port 8001 [--host 127.0.0.1]``.

Serves the callback receiver alone (the worker and the demo can also mount it next to a worker). Settings come
from the environment (``CALLBACK_SECRET`` etc., see :meth:`ReceiverSettings.from_environ`) and the Temporal
connection from env-config, like every other command of the project.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from callbacks._receiver import ReceiverSettings, running_receiver
from longjobs import EXIT_OK, UserError, connect_client, run_command

PROG = "python -m callbacks"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits 2 on bad flags)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run the callback receiver: verified webhook callbacks become workflow signals."
    )
    parser.add_argument(
        "--port", type=int, default=8001, help="TCP port to listen on, 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return args


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (bad settings raise :class:`UserError`)."""
    settings = ReceiverSettings.from_environ(os.environ)  # before connecting: a config error needs no server
    client = await connect_client()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Signals handled in the loop (not as KeyboardInterrupt) give a clean shutdown without a traceback.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_receiver(client, settings, host=args.host, port=args.port) as receiver:
            print(f"callback receiver listening on {receiver.url}", flush=True)
            await stop.wait()
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Run the receiver from the command line; never returns (see :func:`longjobs.run_command`)."""
    args = parse_args(argv)
    # One line per callback on stderr (workflow id, outcome, status); never tokens, signatures or bodies.
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_command(serve(args), prog=PROG)


if __name__ == "__main__":
    main()
