"""Fixtures for the k8s area: rendered overlays, CRD schemas, and a replaying API server.

No Kubernetes API server runs in the test environment (no cluster, no kind), so launcher tests point
the real ``kubernetes`` client at :class:`ReplayApiServer`: an HTTP server on 127.0.0.1 that
answers each (method, path) with scripted responses, in order, and records every request.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = Path(__file__).parent / "crds"  # Kubeflow Trainer v2.3.0, vendored (crds/README.md)
RECORDED = Path(__file__).parent / "recorded"
OVERLAYS = ("local", "gpu-cloud")


def render_kustomization(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` output as a list of objects (the test skips where kubectl is absent)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with embedded kustomize) is not installed on this machine")
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render_kustomization(REPO_ROOT / "manifests" / "overlays" / name) for name in OVERLAYS}


def _strict(schema: Any) -> Any:
    """Reject unknown fields like the API server's pruning would drop them silently: a typo in a
    field name must fail here. Drops x-kubernetes-* extension keys jsonschema does not know."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


class CrdValidator:
    """Validates custom resources against the openAPIV3Schema of the Trainer v2.3 CRDs."""

    def __init__(self, crd_dir: Path):
        paths = sorted(crd_dir.glob("*.yaml"))
        if not paths:
            raise FileNotFoundError(f"no CRD files in {crd_dir}: the vendored Trainer CRDs are missing")
        self.validators: dict[tuple[str, str], jsonschema.Draft7Validator] = {}
        for path in paths:
            crd = yaml.safe_load(path.read_text())
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                # metadata is validated by the API server itself, not by the CRD schema
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                schema["properties"]["apiVersion"] = {"type": "string"}
                schema["properties"]["kind"] = {"type": "string"}
                self.validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)

    def errors(self, obj: dict[str, Any]) -> list[str]:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in self.validators:
            return [f"no CRD for {key}"]
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:200]}"
            for e in self.validators[key].iter_errors(obj)
        ]

    def knows(self, obj: dict[str, Any]) -> bool:
        return (obj.get("apiVersion"), obj.get("kind")) in self.validators


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    return CrdValidator(CRD_DIR)


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


class ReplayApiServer:
    """Answers scripted responses per (method, path); the last response of a route repeats."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[tuple[int, Any]]] = defaultdict(list)
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body)
        self.queries: list[dict[str, str]] = []  # query parameters, parallel to requests
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server.requests.append((self.command, path, json.loads(raw) if raw else None))
                server.queries.append(dict(parse_qsl(query)))
                queue = server.routes.get((self.command, path))
                if queue:
                    status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                else:
                    status, body = (
                        404,
                        _status(404, "NotFound", f"no scripted response for {self.command} {path}"),
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def script(self, method: str, path: str, *responses: tuple[int, Any]) -> None:
        self.routes[(method, path)].extend(responses)

    def calls(self, method: str | None = None, path: str | None = None) -> list[tuple[str, str, Any]]:
        return [
            r for r in self.requests if (method is None or r[0] == method) and (path is None or r[1] == path)
        ]

    def api_client(self):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@pytest.fixture()
def apiserver():
    server = ReplayApiServer()
    yield server
    server.close()


@pytest.fixture()
def api_status():
    return _status
