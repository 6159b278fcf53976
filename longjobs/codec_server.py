"""A codec server: lets the Temporal UI and CLI show encrypted payloads to people who hold the keys.

It implements Temporal's remote codec protocol: ``POST /encode`` and ``POST /decode`` (also under a namespace
prefix, ``/{namespace}/decode``) take and answer ``{"payloads": [...]}`` with payloads in protobuf JSON form,
run through the same :class:`EncryptionCodec` the workers use (keys from ``LONGJOBS_CODEC_KEYS`` or
``LONGJOBS_CODEC_KEYS_FILE``)::

    python -m longjobs.codec_server --port 8888
    temporal workflow show --workflow-id <id> --codec-endpoint http://localhost:8888
    python -m longjobs.codec_server --new-key        # prints a fresh id:base64key entry

Whoever can reach it can decrypt (and encrypt) with the keys: it listens on 127.0.0.1 unless told otherwise, and
``--auth-token`` (or ``LONGJOBS_CODEC_AUTH_TOKEN``) makes it require ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from longjobs._codec import CodecError, EncryptionCodec, codec_from_environ, new_key
from longjobs._connection import UserError
from longjobs._entrypoint import EXIT_OK, run_command

PROG = "python -m longjobs.codec_server"
AUTH_TOKEN_ENV = "LONGJOBS_CODEC_AUTH_TOKEN"
DEFAULT_PORT = 8888
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CORS_ORIGIN = "http://localhost:8233"  # the UI of `temporal server start-dev`
ALLOWED_HEADERS = "content-type, x-namespace, authorization"
MAX_BODY_BYTES = 64 * 1024 * 1024  # a batch of payloads (Temporal allows up to a few MB each)

log = logging.getLogger("longjobs.codec_server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    codec: EncryptionCodec, *, cors_origins: Sequence[str] = (DEFAULT_CORS_ORIGIN,), auth_token: str | None = None
) -> web.Application:
    """The codec server as an aiohttp app (``web.AppRunner`` it, or use :func:`serve`)."""
    origins = {origin.rstrip("/") for origin in cors_origins if origin}
    expected_auth = f"Bearer {auth_token}".encode() if auth_token else None

    def cors_headers(request: web.Request) -> dict[str, str]:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or origin.rstrip("/") not in origins:
            return {}
        return {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: "POST, OPTIONS",
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
            hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",  # the UI's "include cross-origin credentials" option
            hdrs.ACCESS_CONTROL_MAX_AGE: "600",
            hdrs.VARY: "Origin",
        }

    def refuse(request: web.Request, status: int, message: str, headers: Mapping[str, str] = {}) -> web.Response:
        return web.Response(status=status, text=message + "\n", headers={**cors_headers(request), **headers})

    async def preflight(request: web.Request) -> web.Response:
        # Browsers send no credentials on a preflight, so it never needs the token.
        return web.Response(status=204, headers=cors_headers(request))

    def endpoint(convert: Callable[[Sequence[Payload]], Awaitable[list[Payload]]], what: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if expected_auth is not None:
                given = request.headers.get(hdrs.AUTHORIZATION, "").encode()
                if not hmac.compare_digest(given, expected_auth):
                    return refuse(request, 401, "unauthorized: send Authorization: Bearer <token>",
                                  {hdrs.WWW_AUTHENTICATE: 'Bearer realm="longjobs-codec"'})
            try:
                body = await request.text()
                message = json_format.Parse(body, Payloads())
            except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
                return refuse(request, 400, f'bad request: expected JSON {{"payloads": [...]}} ({exc})')
            try:
                converted = await convert(message.payloads)
            except CodecError as exc:
                log.warning("cannot %s (namespace %s): %s", what, request.headers.get("X-Namespace", "-"), exc)
                return refuse(request, 400, f"cannot {what}: {exc}")
            answer = {"payloads": [json_format.MessageToDict(payload) for payload in converted]}
            return web.json_response(answer, headers=cors_headers(request))

        return handle

    encode, decode = endpoint(codec.encode, "encode"), endpoint(codec.decode, "decode")
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    for prefix in ("", "/{namespace}"):
        app.router.add_post(f"{prefix}/encode", encode)
        app.router.add_post(f"{prefix}/decode", decode)
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
    return app


async def serve(
    codec: EncryptionCodec,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    cors_origins: Sequence[str] = (DEFAULT_CORS_ORIGIN,),
    auth_token: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (by default: until SIGTERM or SIGINT)."""
    runner = web.AppRunner(build_app(codec, cors_origins=cors_origins, auth_token=auth_token), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        bound = [address for address in runner.addresses if isinstance(address, tuple)]
        url = f"http://{_url_host(bound[0][0]) if bound else host}:{bound[0][1] if bound else port}"
        print(f"codec server at {url} (key ids: {', '.join(codec.key_ids)}; encrypting with "
              f"{codec.active_key_id}; CORS origins: {', '.join(cors_origins) or 'none'}; "
              f"auth: {'bearer token' if auth_token else 'none'})", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Decode (and encode) longjobs' encrypted payloads for the Temporal UI and CLI "
                    "(keys: LONGJOBS_CODEC_KEYS or LONGJOBS_CODEC_KEYS_FILE).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN",
                        help=f"a Temporal UI origin allowed to call it (repeatable; default {DEFAULT_CORS_ORIGIN})")
    parser.add_argument("--auth-token", help=f"require Authorization: Bearer <token> (default: ${AUTH_TOKEN_ENV})")
    parser.add_argument("--new-key", nargs="?", const="", metavar="ID",
                        help="print a fresh id:base64key entry for LONGJOBS_CODEC_KEYS and exit")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """The command: ``--new-key``, else serve until SIGTERM or SIGINT (exit 0); no keys is a :class:`UserError`."""
    environ = os.environ if environ is None else environ
    if args.new_key is not None:
        print(new_key(args.new_key or None), flush=True)
        return EXIT_OK
    codec = codec_from_environ(environ)
    if codec is None:
        raise UserError("no keys: set LONGJOBS_CODEC_KEYS (id:base64key,...) or LONGJOBS_CODEC_KEYS_FILE "
                        "(make a key with: python -m longjobs.codec_server --new-key)")
    auth_token = args.auth_token or environ.get(AUTH_TOKEN_ENV) or None
    await serve(codec, host=args.host, port=args.port, cors_origins=args.cors_origins or [DEFAULT_CORS_ORIGIN],
                auth_token=auth_token)
    return EXIT_OK


def run(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)  # before run_command: --help and usage errors exit on their own
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    run_command(main(args), prog=PROG)


if __name__ == "__main__":
    run()
