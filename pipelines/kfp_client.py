"""One way to reach a Kubeflow Pipelines endpoint: a ``kfp.Client`` and errors that name what went wrong.

``kfp.Client`` surfaces a refused connection as a urllib3 ``MaxRetryError`` and every HTTP error
as ``kfp_server_api.ApiException`` carrying the gRPC-gateway JSON body; :func:`kfp_call` turns
them into :class:`KfpError` messages that name the endpoint, the status and the server's reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

# a bearer token read from the environment stays out of `ps` listings and shell history
TOKEN_ENV = "KF_PIPELINES_TOKEN"


class KfpError(RuntimeError):
    """A Kubeflow Pipelines call failed; the message names the endpoint and what to check."""


class KfpNotFound(KfpError):
    """The endpoint answered 404: no such pipeline, version, experiment or recurring run."""


def _reason(body: str | bytes | None) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return str(body)[:300]
    return (
        str(data.get("message") or data.get("error") or data)[:300]
        if isinstance(data, dict)
        else str(data)[:300]
    )


@contextmanager
def kfp_call(host: str, what: str) -> Iterator[None]:
    """Translate transport and HTTP failures of the block into :class:`KfpError` naming ``host``."""
    import kfp_server_api
    from urllib3.exceptions import HTTPError

    try:
        yield
    except kfp_server_api.ApiException as exc:
        reason = _reason(exc.body) or exc.reason
        if exc.status in (401, 403):
            raise KfpError(
                f"{what}: KFP at {host} refused the request ({exc.status} {exc.reason}: {reason}); "
                "pass a valid token with --token (or $KF_PIPELINES_TOKEN) or check the namespace's access"
            ) from None
        if exc.status == 404:
            raise KfpNotFound(f"{what}: not found at {host} ({reason})") from None
        if exc.status and exc.status >= 500:
            raise KfpError(f"{what}: KFP at {host} failed with {exc.status} {exc.reason}: {reason}") from None
        raise KfpError(
            f"{what}: KFP at {host} rejected the request ({exc.status} {exc.reason}): {reason}"
        ) from None
    except (HTTPError, OSError) as exc:
        raise KfpError(f"{what}: KFP endpoint {host} does not answer ({type(exc).__name__}: {exc})") from None


def _probe(host: str, token: str | None) -> None:
    """One health request, so that a refusing or failing endpoint is named as such.

    ``kfp.Client`` asks for ``/healthz`` itself, but retries any error five times five seconds apart
    and then reports a timeout, whether the endpoint is down, refuses the token or fails.
    """
    import kfp_server_api

    config = kfp_server_api.Configuration(host=host if host.startswith("http") else f"https://{host}")
    config.host = config.host.rstrip("/")
    if token:
        config.api_key["authorization"] = token
        config.api_key_prefix["authorization"] = "Bearer"
    with kfp_call(host, "connect"):
        kfp_server_api.HealthzServiceApi(kfp_server_api.ApiClient(config)).healthz_service_get_healthz()


def connect(host: str, *, namespace: str | None = None, token: str | None = None):
    """A ``kfp.Client`` for ``host`` (``namespace`` for multi-user deployments, ``token`` = bearer
    token, default ``$KF_PIPELINES_TOKEN``)."""
    import kfp

    token = token or os.environ.get(TOKEN_ENV) or None
    _probe(host, token)
    kwargs = {"host": host, "existing_token": token}
    if namespace:
        kwargs["namespace"] = namespace
    with kfp_call(host, "connect"):
        return kfp.Client(**kwargs)
