"""Who is calling and what they may do, asked of Kubernetes itself.

A bearer token is checked with a TokenReview (ServiceAccount tokens and whatever
authenticators the cluster has, e.g. OIDC); a permission with a SubjectAccessReview, so the
gateway and `kubectl auth can-i` always agree. Decisions are cached for a short, bounded
time (`TTLCache`), keyed by the token's SHA-256 (the token itself is never kept or logged),
and concurrent identical questions share one API call.

Failures are never cached and never guessed: a review that cannot be made raises
`AuthUnavailable`, which the server answers 503 (fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kubernetes import client

from ..api import GROUP, PLURAL
from .cache import TTLCache

QUERY_SUBRESOURCE = "query"
QUERY_VERB = "create"
SEE_VERB = "get"

T = TypeVar("T")


class AuthUnavailable(Exception):
    """A TokenReview or SubjectAccessReview could not be made (the message says which and
    why, never the token)."""


@dataclass(frozen=True)
class Identity:
    """An authenticated user as the TokenReview names it."""

    name: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Access:
    """One SubjectAccessReview question on a DeepSeekDeployment."""

    namespace: str
    name: str
    verb: str
    subresource: str = ""

    def resource_attributes(self) -> dict[str, str]:
        """The SubjectAccessReview's resourceAttributes."""
        attributes = {"group": GROUP, "resource": PLURAL, "verb": self.verb,
                      "namespace": self.namespace, "name": self.name}
        if self.subresource:
            attributes["subresource"] = self.subresource
        return attributes


def query_access(namespace: str, name: str) -> Access:
    """model:query: verb create on deepseekdeployments/query of that deployment."""
    return Access(namespace, name, QUERY_VERB, QUERY_SUBRESOURCE)


def see_access(namespace: str, name: str) -> Access:
    """Seeing a deployment exists: verb get on it (model:read)."""
    return Access(namespace, name, SEE_VERB)


class Reviewer(Protocol):
    """The two blocking API calls (run in a thread pool)."""

    def token_review(self, token: str, audiences: tuple[str, ...]) -> Identity | None:
        """The identity behind `token`, or None when it does not authenticate.

        Raises:
            AuthUnavailable: the review could not be made.
        """

    def access_review(self, identity: Identity, access: Access) -> bool:
        """Whether `identity` may do `access`.

        Raises:
            AuthUnavailable: the review could not be made.
        """


class KubeReviewer:
    """`Reviewer` through the kubernetes client; each call times out after
    `timeout_seconds`."""

    def __init__(self, api: client.ApiClient, timeout_seconds: float = 5.0) -> None:
        self._authn = client.AuthenticationV1Api(api)
        self._authz = client.AuthorizationV1Api(api)
        self.timeout_seconds = timeout_seconds

    def token_review(self, token: str, audiences: tuple[str, ...]) -> Identity | None:
        """See `Reviewer.token_review`."""
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(
            token=token, audiences=list(audiences) or None))
        try:
            review = self._authn.create_token_review(body,
                                                     _request_timeout=self.timeout_seconds)
        except Exception as error:  # ApiException, urllib3 and socket errors alike
            raise AuthUnavailable(f"TokenReview failed: {_describe(error)}") from None
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        extra = tuple(sorted((key, tuple(values or ())) for key, values in
                             (user.extra or {}).items()))
        return Identity(user.username or "", user.uid or "", tuple(user.groups or ()), extra)

    def access_review(self, identity: Identity, access: Access) -> bool:
        """See `Reviewer.access_review`."""
        body = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=identity.name, groups=list(identity.groups), uid=identity.uid or None,
            extra={key: list(values) for key, values in identity.extra} or None,
            resource_attributes=client.V1ResourceAttributes(**access.resource_attributes())))
        try:
            review = self._authz.create_subject_access_review(
                body, _request_timeout=self.timeout_seconds)
        except Exception as error:
            raise AuthUnavailable(f"SubjectAccessReview failed: {_describe(error)}") from None
        return bool(review.status is not None and review.status.allowed)


def _describe(error: Exception) -> str:
    """An API error in one line: the HTTP status and reason, or the exception's class and
    message (no request bodies, so no token)."""
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    if isinstance(status, int) and status:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(error).__name__}: {error}"[:300]


def token_key(token: str) -> str:
    """The cache key of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authorizer:
    """Cached, coalesced reviews for the event loop; blocking calls run on `executor`."""

    def __init__(self, reviewer: Reviewer, executor: Executor, *, ttl_seconds: float,
                 max_size: int, audiences: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Cache each kind of decision for `ttl_seconds`, at most `max_size` entries each.
        `audiences` empty: the apiserver's own audiences."""
        self._reviewer = reviewer
        self._executor = executor
        self._audiences = audiences
        self._clock = clock
        self._identities: TTLCache[str, tuple[Identity | None]] = TTLCache(ttl_seconds,
                                                                           max_size)
        self._decisions: TTLCache[tuple[Identity, Access], bool] = TTLCache(ttl_seconds,
                                                                            max_size)
        self._pending: dict[Hashable, asyncio.Future[Any]] = {}

    async def authenticate(self, token: str) -> Identity | None:
        """The identity behind `token`, or None when it does not authenticate.

        Raises:
            AuthUnavailable: the TokenReview could not be made.
        """
        key = token_key(token)
        cached = self._identities.get(key, self._clock())
        if cached is not None:
            return cached[0]
        identity = await self._once(("token", key), lambda: self._reviewer.token_review(
            token, self._audiences))
        self._identities.put(key, (identity,), self._clock())
        return identity

    async def allowed(self, identity: Identity, access: Access) -> bool:
        """Whether `identity` may do `access`.

        Raises:
            AuthUnavailable: the SubjectAccessReview could not be made.
        """
        key = (identity, access)
        cached = self._decisions.get(key, self._clock())
        if cached is not None:
            return cached
        decision = await self._once(("sar", key), lambda: self._reviewer.access_review(
            identity, access))
        self._decisions.put(key, decision, self._clock())
        return decision

    async def _once(self, key: Hashable, call: Callable[[], T]) -> T:
        """Run `call` on the executor; concurrent callers with the same key share it."""
        pending = self._pending.get(key)
        if pending is not None:
            result: T = await asyncio.shield(pending)
            return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.run_in_executor(self._executor, call)
        self._pending[key] = future
        try:
            return await asyncio.shield(future)
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
