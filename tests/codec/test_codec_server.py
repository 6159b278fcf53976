"""The codec server over real HTTP: Temporal's remote codec protocol, CORS for the UI, the bearer token, and the
command's exits (``--new-key``, no keys, SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from typing import Any

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from longjobs import EncryptionCodec, new_key
from longjobs._codec import ENCODING, parse_keys
from tests.codec.conftest import running_codec_server

UI = "http://localhost:8233"


def as_json(payload: Payload) -> dict[str, Any]:
    answer: dict[str, Any] = json_format.MessageToDict(payload)
    return answer


def from_json(body: dict[str, Any]) -> list[Payload]:
    return [json_format.ParseDict(item, Payload()) for item in body["payloads"]]


def plain_payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_encode_then_decode_over_http(codec: EncryptionCodec, http: httpx.AsyncClient) -> None:
    payloads = [plain_payload("hello"), plain_payload("world")]
    async with running_codec_server(codec) as url:
        encoded = await http.post(f"{url}/encode", json={"payloads": [as_json(p) for p in payloads]})
        assert encoded.status_code == 200, encoded.text
        assert encoded.headers["content-type"].startswith("application/json")
        sealed = from_json(encoded.json())
        assert [p.metadata["encoding"] for p in sealed] == [ENCODING, ENCODING]
        assert "hello" not in encoded.text and "aGVsbG8" not in encoded.text
        # Protobuf JSON: metadata values are base64, as the UI and CLI send them.
        assert encoded.json()["payloads"][0]["metadata"]["encoding"] == "YmluYXJ5L2VuY3J5cHRlZA=="
        assert await codec.decode(sealed) == payloads

        decoded = await http.post(f"{url}/decode", json=encoded.json(), headers={"X-Namespace": "default"})
        assert decoded.status_code == 200, decoded.text
        assert from_json(decoded.json()) == payloads


async def test_namespace_prefixed_paths_and_empty_batches(codec: EncryptionCodec, http: httpx.AsyncClient) -> None:
    [sealed] = await codec.encode([plain_payload("ns")])
    async with running_codec_server(codec) as url:
        decoded = await http.post(f"{url}/default/decode", json={"payloads": [as_json(sealed)]})
        assert from_json(decoded.json()) == [plain_payload("ns")]
        empty = await http.post(f"{url}/decode", json={"payloads": []})
        assert empty.status_code == 200 and empty.json() == {"payloads": []}
        assert (await http.post(f"{url}/decode", json={})).json() == {"payloads": []}


async def test_plain_payloads_pass_through_decode(codec: EncryptionCodec, http: httpx.AsyncClient) -> None:
    async with running_codec_server(codec) as url:
        answer = await http.post(f"{url}/decode", json={"payloads": [as_json(plain_payload("old"))]})
    assert from_json(answer.json()) == [plain_payload("old")]


async def test_bad_requests_and_unknown_keys_are_clear_400s(codec: EncryptionCodec, http: httpx.AsyncClient) -> None:
    [foreign] = await EncryptionCodec(parse_keys(new_key("elsewhere"))).encode([plain_payload("x")])
    async with running_codec_server(codec) as url:
        not_json = await http.post(f"{url}/decode", content=b"nope", headers={"content-type": "application/json"})
        assert not_json.status_code == 400 and "expected JSON" in not_json.text
        wrong_shape = await http.post(f"{url}/decode", json={"payloads": [{"metadata": {"encoding": "not base64!"}}]})
        assert wrong_shape.status_code == 400
        unknown = await http.post(f"{url}/decode", json={"payloads": [as_json(foreign)]})
        assert unknown.status_code == 400
        assert "key id 'elsewhere'" in unknown.text
        assert (await http.get(f"{url}/decode")).status_code == 405
        assert (await http.post(f"{url}/other")).status_code == 404


async def test_cors_preflight_and_response_headers_for_the_ui(codec: EncryptionCodec, http: httpx.AsyncClient) -> None:
    preflight_headers = {"Origin": UI, "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "content-type,x-namespace,authorization"}
    async with running_codec_server(codec, cors_origins=[UI], auth_token="tok") as url:
        for path in ("/decode", "/encode", "/default/decode"):
            preflight = await http.options(f"{url}{path}", headers=preflight_headers)
            assert preflight.status_code == 204  # no token needed: browsers send none on a preflight
            assert preflight.headers["access-control-allow-origin"] == UI
            assert "POST" in preflight.headers["access-control-allow-methods"]
            allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
            assert {"content-type", "x-namespace", "authorization"} <= allowed
        answer = await http.post(f"{url}/decode", json={"payloads": []},
                                 headers={"Origin": UI, "Authorization": "Bearer tok"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == UI
        # Another origin gets no CORS grant (its browser refuses to hand the answer to the page).
        other = await http.options(f"{url}/decode", headers={**preflight_headers, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_bearer_token_is_required_when_configured(codec: EncryptionCodec, http: httpx.AsyncClient) -> None:
    [sealed] = await codec.encode([plain_payload("guarded")])
    body = {"payloads": [as_json(sealed)]}
    async with running_codec_server(codec, auth_token="s3cret-token") as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            refused = await http.post(f"{url}/decode", json=body, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "guarded" not in refused.text
        assert (await http.post(f"{url}/encode", json=body)).status_code == 401
        allowed = await http.post(f"{url}/decode", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert allowed.status_code == 200
        assert from_json(allowed.json()) == [plain_payload("guarded")]


# -- the command ------------------------------------------------------------------------------------------------


async def run_module(*args: str, env: dict[str, str], timeout: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longjobs.codec_server", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGJOBS_CODEC")}
    return {**env, **extra}


async def test_new_key_prints_one_entry() -> None:
    code, out, err = await run_module("--new-key", env=clean_env())
    assert code == 0, err
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9+/]{43}=\n", out)
    code, out, _ = await run_module("--new-key", "prod-2", env=clean_env())
    assert code == 0 and out.startswith("prod-2:")


async def test_missing_or_malformed_keys_exit_2_with_one_line() -> None:
    code, out, err = await run_module("--port", "0", env=clean_env())
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "LONGJOBS_CODEC_KEYS" in err
    code, _, err = await run_module("--port", "0", env=clean_env(LONGJOBS_CODEC_KEYS="a:short"))
    assert code == 2 and err.count("\n") == 1 and "the key for id 'a'" in err


async def test_serves_then_exits_0_on_sigterm(
    keys_setting: str, codec: EncryptionCodec, http: httpx.AsyncClient
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longjobs.codec_server", "--port", "0",
        env=clean_env(LONGJOBS_CODEC_KEYS=keys_setting, LONGJOBS_CODEC_AUTH_TOKEN="env-token"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        found = re.search(r"codec server at (http://\S+) ", line)
        assert found, line
        assert "key ids: active, older" in line and "auth: bearer token" in line
        assert keys_setting.split(",")[0].split(":")[1] not in line
        [sealed] = await codec.encode([plain_payload("via the command")])
        answer = await http.post(f"{found[1]}/decode", json={"payloads": [as_json(sealed)]},
                                 headers={"Authorization": "Bearer env-token"})
        assert answer.status_code == 200 and from_json(answer.json()) == [plain_payload("via the command")]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
