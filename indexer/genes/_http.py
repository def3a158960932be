"""HTTP for the NCBI fetch: a rate limit, and retries with exponential backoff that honour ``Retry-After``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from indexer._errors import DataError

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S: Final = 120.0


class Malformed(Exception):
    """An E-utilities answer that is not the documented JSON (retried, then a DataError)."""


class RateLimiter:
    """Spaces request starts at least ``1 / per_second`` seconds apart."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._last = float("-inf")

    def wait(self) -> None:
        now = time.monotonic()
        delay = self._last + self.interval - now
        if delay > 0:
            time.sleep(delay)
            now = time.monotonic()
        self._last = now


class Session:
    """HTTP client with NCBI's rate limit, retries with exponential backoff and ``Retry-After``."""

    def __init__(
        self,
        *,
        rate: float,
        max_retries: int,
        backoff_s: float,
        timeout_s: float,
    ) -> None:
        import httpx  # imported on use: it costs ~0.1 s, and most commands never go online

        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)))
        self.limiter = RateLimiter(rate)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.n_requests = 0
        self.n_retries = 0

    def close(self) -> None:
        self.client.close()

    def _sleep_before_retry(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff_s * (2**attempt)
        if response is not None and (after := response.headers.get("Retry-After")):
            try:
                delay = max(delay, min(float(after), _MAX_RETRY_AFTER_S))
            except ValueError:
                pass  # an HTTP date; the exponential delay stands
        self.n_retries += 1
        time.sleep(delay)

    def call(self, what: str, send: Callable[[], httpx.Response], parse: Callable[[httpx.Response], Any]) -> Any:
        """Send a request until it succeeds and parses, or raise a DataError after the last retry."""
        import httpx

        problem = ""
        last_response: httpx.Response | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep_before_retry(attempt - 1, last_response)
            last_response = None
            self.limiter.wait()
            self.n_requests += 1
            try:
                response = send()
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}"
                logger.warning("%s failed (%s); retrying", what, problem)
                continue
            last_response = response
            if response.status_code in _RETRY_STATUS:
                problem = f"HTTP {response.status_code}"
                logger.warning("%s answered %s; retrying", what, problem)
                continue
            if response.status_code >= 400:
                msg = f"{what} answered HTTP {response.status_code}; check the URL, the API key and the e-mail"
                raise DataError(msg)
            try:
                return parse(response)
            except Malformed as e:
                problem = f"malformed answer: {e}"
                logger.warning("%s gave a %s; retrying", what, problem)
        msg = (
            f"{what} failed after {self.max_retries + 1} tries ({problem}); NCBI may be down or limiting "
            "requests: rerun later (ids already fetched are kept), or pass --api-key"
        )
        raise DataError(msg)
