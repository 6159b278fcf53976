"""Command line entry point.

``python -m demo_service --port 8000 [--host H] [--token T] [--admin-key K] [--webhook-secret S]``; the webhook
secret defaults to ``$DEMO_WEBHOOK_SECRET``, else the built-in ``DEFAULT_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from demo_service.app import (
    DEFAULT_ADMIN_KEY,
    DEFAULT_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    check_webhook_secret,
    create_app,
    service_url,
    start_runner,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits 2 on bad flags)."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_service", description="Run the demo job service (a slow fake job API)."
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port to listen on, 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="accepted bearer token (default: %(default)s)")
    parser.add_argument(
        "--admin-key", default=DEFAULT_ADMIN_KEY, help="X-Admin-Key for /admin routes (default: %(default)s)"
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("DEMO_WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
        help="Standard Webhooks secret (whsec_...) that signs callbacks "
        "(default: $DEMO_WEBHOOK_SECRET, else the public demo secret)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    try:
        check_webhook_secret(args.webhook_secret)
    except ValueError as exc:
        parser.error(f"--webhook-secret: {exc}")
    return args


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; return the process exit code."""
    app = create_app(token=args.token, admin_key=args.admin_key, webhook_secret=args.webhook_secret)
    try:
        runner, port = await start_runner(app, args.host, args.port)
    except OSError as exc:
        print(f"demo_service: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Signals handled in the loop (not as KeyboardInterrupt) give a clean shutdown without a traceback.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"demo job service listening on {service_url(args.host, port)}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the service from the command line."""
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
