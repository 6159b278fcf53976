"""A fake OpenAI-compatible chat-completions server: real HTTP on loopback, scripted replies, recorded requests.

``POST /v1/chat/completions`` answers the next scripted :class:`Reply` (status, body, headers), or, when the
script is empty, a valid chat-completions answer whose content is :data:`VALID_ANALYSIS` as JSON. Every request
is recorded (headers and JSON body) so a test can check the prompt, the model, the key and the response format.
With ``api_key`` set, a request without that bearer key gets OpenAI's 401 (echoing the key it got, as a careless
server might: the client must scrub it).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

VALID_ANALYSIS: dict[str, Any] = {
    "summary": "The job processed its items without trouble.",
    "findings": ["every item was processed"],
    "recommendations": ["nothing to do"],
}


def completion(content: str, *, model: str = "fake-model") -> dict[str, Any]:
    """A chat-completions answer whose assistant message is ``content``."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def openai_error(message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    """An error body the way OpenAI shapes it."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class Reply:
    """One scripted answer: a dict body is sent as JSON, a str as it is; None means the default valid answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"  # for a str body

    @classmethod
    def content(cls, text: str) -> Reply:
        """A 200 whose assistant message is ``text`` (valid or not)."""
        return cls(200, completion(text))


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages

    @property
    def prompt(self) -> str:
        """The (first) user message."""
        return next(str(m["content"]) for m in self.messages if m["role"] == "user")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


@dataclass
class FakeLLM:
    url: str = ""
    api_key: str | None = None
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    default_content: str = json.dumps(VALID_ANALYSIS)

    @property
    def base_url(self) -> str:
        """What LLM_BASE_URL is set to (the OpenAI convention: the /v1 prefix is part of the base URL)."""
        return f"{self.url}/v1"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()
        self.api_key = None
        self.default_content = json.dumps(VALID_ANALYSIS)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        if self.api_key is not None:
            got = request.headers.get("Authorization", "")
            if got != f"Bearer {self.api_key}":
                given = got.removeprefix("Bearer ") or "none"
                return web.json_response(
                    openai_error(f"Incorrect API key provided: {given}.", code="invalid_api_key"), status=401
                )
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or "model" not in body:
            return web.json_response(openai_error("'messages' and 'model' are required"), status=400)
        reply = self.replies.popleft() if self.replies else Reply()
        payload = completion(self.default_content, model=body["model"]) if reply.body is None else reply.body
        if isinstance(payload, str):
            return web.Response(status=reply.status, text=payload, headers=reply.headers,
                                content_type=reply.content_type)
        return web.json_response(payload, status=reply.status, headers=reply.headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app


@asynccontextmanager
async def running_fake_llm(host: str = "127.0.0.1") -> AsyncIterator[FakeLLM]:
    """The fake on a free loopback port (port 0)."""
    fake = FakeLLM()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
