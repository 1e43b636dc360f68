"""One way to reach a Kubeflow Pipelines endpoint: a ``kfp.Client`` and errors that name what went wrong.

``kfp.Client`` surfaces a refused connection as a urllib3 ``MaxRetryError`` and every HTTP error
as ``kfp_server_api.ApiException`` carrying the gRPC-gateway JSON body; :func:`kfp_call` turns
them into :class:`KfpError` messages that name the endpoint, the status and the server's reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager


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


def connect(host: str, *, namespace: str | None = None, token: str | None = None):
    """A ``kfp.Client`` for ``host`` (``namespace`` for multi-user deployments, ``token`` = bearer token)."""
    import kfp

    kwargs = {"host": host, "existing_token": token}
    if namespace:
        kwargs["namespace"] = namespace
    with kfp_call(host, "connect"):
        return kfp.Client(**kwargs)
