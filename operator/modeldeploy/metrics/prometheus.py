"""The `prometheus` provider: a PromQL instant query evaluated at the end of each window.

The query's `{{namespace}}`, `{{name}}`, `{{revision}}`, `{{role}}` and `{{interval}}` are filled in
(the window as a PromQL duration, such as `30s`), and the query is evaluated at the window's end
(`time=now`). Honest about what comes back:

| answer                                        | measurement                       |
|-----------------------------------------------|-----------------------------------|
| exactly one finite sample (vector or scalar)  | its value                         |
| an empty vector, NaN, +Inf or -Inf            | no value: Inconclusive            |
| several samples, a matrix, a string           | Error (the query is ambiguous)    |
| HTTP or PromQL error, timeout, refused        | Error                             |

Credentials come from the Secret the metric names (`token`, or `username` and `password`; `ca.crt`),
read through `read_secret` at each measurement, so a rotated Secret is used at once.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aiohttp

from modeldeploy.api.placeholders import fill_query, placeholders
from modeldeploy.api.revision import Role
from modeldeploy.api.spec import Metric, PrometheusProvider
from modeldeploy.canary.decide import Measurement
from modeldeploy.canary.verdicts import Sample
from modeldeploy.metrics.base import ProviderError, ReadSecret, Target


def promql_duration(span: timedelta) -> str:
    """A window as a PromQL duration in whole seconds (at least 1s)."""
    return f"{max(1, round(span.total_seconds()))}s"


def sample_from_response(body: object) -> Sample:
    """The one sample of a Prometheus /api/v1/query answer; ProviderError when it is not one.

    An empty vector gives a Sample without value, NaN and infinities a Sample with that value:
    both are judged Inconclusive, never a pass.
    """
    if not isinstance(body, Mapping):
        raise ProviderError("the answer is not a JSON object")
    if body.get("status") != "success":
        raise ProviderError(f"PromQL error ({body.get('errorType', 'unknown')}): {body.get('error', '')}")
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise ProviderError("the answer has no data")
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        return Sample(value=_number(result))
    if kind != "vector":
        raise ProviderError(f"the query returns a {kind}, not one sample: use an instant vector or a scalar")
    if not isinstance(result, list):
        raise ProviderError("the answer's result is not a list")
    if not result:
        return Sample(value=None)
    if len(result) > 1:
        series = ", ".join(_labels(item) for item in result[:3])
        raise ProviderError(f"the query returns {len(result)} samples ({series}{', ...' if len(result) > 3 else ''}); "
                            f"aggregate it to one (sum, max, ...)")
    item = result[0]
    if not isinstance(item, Mapping):
        raise ProviderError("a sample is not a JSON object")
    return Sample(value=_number(item.get("value")))


def _labels(item: object) -> str:
    labels = item.get("metric") if isinstance(item, Mapping) else None
    if not isinstance(labels, Mapping):
        return "{}"
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _number(point: object) -> float:
    if not isinstance(point, list) or len(point) != 2:
        raise ProviderError(f"a sample is not [time, value]: {point!r}")
    try:
        return float(point[1])  # Prometheus writes NaN and infinities as "NaN", "+Inf", "-Inf"
    except (TypeError, ValueError):
        raise ProviderError(f"a sample's value is not a number: {point[1]!r}") from None


class PrometheusMetrics:
    """The prometheus provider: one per operator (one HTTP session; nothing kept between windows)."""

    kind: ClassVar[str] = PrometheusProvider.kind

    def __init__(self, read_secret: ReadSecret | None = None) -> None:
        self._read_secret = read_secret
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        """Close the HTTP session (on operator cleanup)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _credentials(self, provider: PrometheusProvider, namespace: str
                           ) -> tuple[dict[str, str], ssl.SSLContext | None]:
        """The Authorization header and the TLS context the metric's Secret asks for."""
        if provider.secret_name is None:
            return {}, None
        if self._read_secret is None:
            raise ProviderError(f"Secret {namespace}/{provider.secret_name} cannot be read: this operator has no "
                                f"Secret access configured")
        data = await self._read_secret(namespace, provider.secret_name)
        where = f"Secret {namespace}/{provider.secret_name}"
        headers: dict[str, str] = {}
        if "token" in data:
            headers["Authorization"] = f"Bearer {data['token'].decode().strip()}"
        elif "username" in data or "password" in data:
            if "username" not in data or "password" not in data:
                raise ProviderError(f"{where} needs both username and password for basic auth")
            pair = base64.b64encode(data["username"].rstrip(b"\r\n") + b":" + data["password"].rstrip(b"\r\n")).decode()
            headers["Authorization"] = f"Basic {pair}"
        context = None
        if "ca.crt" in data:
            key = hashlib.sha256(data["ca.crt"]).hexdigest()
            context = self._contexts.get(key)
            if context is None:
                try:
                    context = ssl.create_default_context(cadata=data["ca.crt"].decode())
                except (ssl.SSLError, ValueError) as error:
                    raise ProviderError(f"{where}: ca.crt is not a PEM certificate bundle: {error}") from None
                self._contexts[key] = context
        return headers, context

    async def query(self, provider: PrometheusProvider, query: str, at: datetime, namespace: str) -> Sample:
        """Evaluate `query` at `at`; the one sample it returns, or ProviderError."""
        headers, context = await self._credentials(provider, namespace)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = provider.address.rstrip("/") + "/api/v1/query"
        seconds = provider.timeout.total_seconds()
        # Prometheus gives up a little before the client does, so its own timeout error comes back.
        form = {"query": query, "time": f"{at.timestamp():.3f}",
                "timeout": f"{int(max(1.0, seconds - 0.5) * 1000)}ms"}
        try:
            async with self._session.post(url, data=form, headers=headers, allow_redirects=False,
                                          ssl=context if context is not None else True,
                                          timeout=aiohttp.ClientTimeout(total=seconds)) as response:
                text = await response.text()
                body: Any
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status != 200:
                    detail = (f"{body.get('errorType', '')}: {body.get('error', '')}" if isinstance(body, Mapping)
                              else text[:200].strip())
                    raise ProviderError(f"{url} answered HTTP {response.status} {detail}".rstrip())
        except TimeoutError:
            raise ProviderError(f"{url} did not answer within {seconds:g} s") from None
        except aiohttp.ClientError as error:
            raise ProviderError(f"{url}: {error}") from None
        except OSError as error:
            raise ProviderError(f"{url}: {error}") from None
        if body is None:
            raise ProviderError(f"{url} answered with no JSON: {text[:200].strip()}")
        return sample_from_response(body)

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        """The metric's query over [window_start, now] for the canary; an Error measurement when it fails."""
        provider = metric.provider
        if not isinstance(provider, PrometheusProvider):
            raise TypeError(f"metric {metric.name} is not a prometheus metric")
        if "revision" in placeholders(provider.query) and not target.canary_revision:
            return Measurement(metric=metric.name, at=now, window_start=window_start,
                               error="the query names {{revision}} but no canary revision is known")
        query = fill_query(provider.query, {
            "namespace": target.namespace,
            "name": target.name,
            "revision": target.canary_revision or "",
            "role": Role.CANARY,
            "interval": promql_duration(now - window_start),
        })
        try:
            sample = await self.query(provider, query, now, target.namespace)
        except ProviderError as error:
            return Measurement(metric=metric.name, at=now, window_start=window_start, error=str(error))
        return Measurement(metric=metric.name, at=now, window_start=window_start, canary=sample)
