"""Building request URLs from a spec, and refusing URLs from answers that leave the API's origin.

A ``Location`` header or a link in a body is the API's word about where to go next. Followed blindly it could
send the worker's credential anywhere; so such URLs must be on the spec's own origin or one it allows.
"""

from __future__ import annotations

from urllib.parse import quote, urljoin, urlsplit

from jobspec import ApiSpec


class ForeignOrigin(Exception):
    """A URL from an answer points outside the allowed origins; the job fails as permanent."""


class BadJobId(Exception):
    """A job id that cannot be put in a URL path safely (e.g. one with '..' segments)."""


def origin(url: str) -> str:
    """``scheme://host:port`` with the default port spelled out, so equal origins compare equal."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def check_origin(spec: ApiSpec, url: str) -> str:
    """Return ``url`` if its origin is base_url's or an allowed one, else raise :class:`ForeignOrigin`."""
    allowed = {origin(spec.base_url), *(origin(o) for o in spec.allowed_origins)}
    if urlsplit(url).scheme not in ("http", "https") or origin(url) not in allowed:
        raise ForeignOrigin(
            f"refusing to follow {url!r}: not on the API's origin {origin(spec.base_url)} "
            "(add it to the spec's allowed_origins if it is trusted)"
        )
    return url


def url_from_answer(spec: ApiSpec, request_url: str, reference: str) -> str:
    """An absolute, origin-checked URL from a Location header or a link (relative ones resolve)."""
    return check_origin(spec, urljoin(request_url, reference))


def encode_job_id(spec: ApiSpec, job_id: str) -> str:
    """The job id as it goes into a path: one segment, or a resource path (AIP-151 names keep their '/')."""
    if spec.job_id_in_path == "segment":
        return quote(job_id, safe="")
    segments = job_id.strip("/").split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise BadJobId(f"job id {job_id!r} is not a safe resource path")
    return quote(job_id.strip("/"), safe="/")


def build_url(spec: ApiSpec, path: str, *, job_id: str | None = None, result_id: str | None = None) -> str:
    """base_url + path, with ``{job_id}`` and ``{result_id}`` filled and encoded."""
    if job_id is not None:
        path = path.replace("{job_id}", encode_job_id(spec, job_id))
    if result_id is not None:
        path = path.replace("{result_id}", quote(result_id, safe=""))
    return spec.base_url.rstrip("/") + path
