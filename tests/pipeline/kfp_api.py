"""A loopback Kubeflow Pipelines v2beta1 API server that checks every request against the API's models.

Request bodies are checked field by field against the ``kfp_server_api`` models (the package the
KFP client is generated from): an unknown field, a wrong type or a value outside an enum is a 400,
as grpc-gateway answers. On top of the model check it applies the API server's own rules for the
calls it serves, read from the KFP backend (``backend/src/apiserver/server``: ``toModelJob``,
``pipeline_upload_server.go``): a recurring run needs a name, 1 <= max_concurrency <= 10, a cron
that ``robfig/cron`` v1 ``Parse`` accepts (5 or 6 fields, seconds first) or an interval >= 1 s,
and an existing experiment and pipeline version; a pipeline name or a version name inside a
pipeline is unique (409). Responses are built from the same models and checked the same way, and
errors carry the gRPC status body (``code``, ``message``) the real server sends.

What it does not do: run anything. ``fire(id, when)`` returns what the ScheduledWorkflow controller
would start at a trigger time (the stored package and the parameters with ``[[ScheduledTime]]``,
``[[Index]]`` and ``[[RunUUID]]`` expanded), so a test can run that with kfp.local.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import kfp_server_api
import yaml

INT64_FIELDS = {"max_concurrency", "interval_second"}  # int64 in the proto: JSON string or number
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/-]+$")
_CRON_BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_NAMES = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_NAMES.update({d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])})


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _model(name: str):
    return getattr(kfp_server_api.models, name)


def check(value, type_name: str, path: str) -> None:
    """Raise ApiError(400) unless ``value`` fits the kfp_server_api type ``type_name``."""

    def bad(why: str):
        raise ApiError(400, 3, f"invalid value for {path}: {why}")

    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            bad("expected a list")
        for i, item in enumerate(value):
            check(item, type_name[5:-1], f"{path}[{i}]")
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            bad("expected an object")
        return
    if type_name == "object":
        if not isinstance(value, dict):
            bad("expected an object")
        return
    if type_name == "str":
        field = path.rsplit(".", 1)[-1]
        if field in INT64_FIELDS:
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
            ):
                bad(f"expected an int64, got {value!r}")
        elif not isinstance(value, str):
            bad(f"expected a string, got {type(value).__name__}")
        return
    if type_name == "bool":
        if not isinstance(value, bool):
            bad("expected a boolean")
        return
    if type_name in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            bad("expected a number")
        return
    if type_name == "datetime":
        try:
            dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            bad(f"not an RFC 3339 time: {value!r}")
        return
    cls = _model(type_name)
    allowed = getattr(cls, "allowable_values", None)
    if allowed is not None:
        if value not in allowed:
            bad(f"{value!r} is not one of {allowed}")
        return
    if not isinstance(value, dict):
        bad(f"expected a {type_name} object")
    json_to_attr = {v: k for k, v in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in json_to_attr:
            raise ApiError(400, 3, f"unknown field {path}.{key} in {type_name}")
        check(item, cls.openapi_types[json_to_attr[key]], f"{path}.{key}")


def _cron_ok(expr: str) -> bool:
    """robfig/cron v1 Parse: 5 or 6 fields (seconds first, day-of-week optional), or a descriptor."""
    if expr.startswith("@"):
        return expr in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly") or (
            expr.startswith("@every ")
        )
    fields = expr.split()
    if len(fields) not in (5, 6):
        return False
    for field, (low, high) in zip(fields, _CRON_BOUNDS, strict=False):
        if not _CRON_FIELD.match(field):
            return False
        for token in re.split(r"[,/-]", field):
            if token in ("*", "?") or token == "":
                continue
            value = int(token) if token.isdigit() else _NAMES.get(token.lower())
            if value is None or not low <= value <= high:
                return False
    return True


def _ok(model: str, payload: dict) -> tuple[int, dict]:
    """A 200 answer, checked against the response model like every request."""
    try:
        check(payload, model, model)
    except ApiError as exc:  # a bug in this test server, not in the client
        raise AssertionError(f"test KFP server built an invalid {model}: {exc}") from None
    return 200, payload


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _filter(query: dict, items: list[dict], key_map: dict[str, str]) -> list[dict]:
    raw = query.get("filter", [""])[0]
    if not raw:
        return items
    for pred in json.loads(raw).get("predicates", []):
        if pred.get("operation") not in ("EQUALS", 1):  # the enum travels as its name or its number
            raise ApiError(400, 3, f"filter operation {pred.get('operation')} not served by this test server")
        field = key_map.get(pred["key"], pred["key"])
        items = [i for i in items if i.get(field) == pred.get("stringValue")]
    return items


class KfpApiServer:
    """State + routing. ``token`` set: requests need ``Authorization: Bearer <token>`` (else 401).
    ``fail_with``: answer every request with this HTTP status (e.g. 500)."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.fail_with: int | None = None
        self.experiments: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}  # version id -> version (+ "_package")
        self.recurring: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers for tests
    def fire(self, recurring_run_id: str, scheduled: dt.datetime) -> tuple[str, dict]:
        """(package YAML, parameters) of the run the scheduler would start at ``scheduled``."""
        job = self.recurring[recurring_run_id]
        if job["mode"] != "ENABLE":
            raise RuntimeError(f"recurring run {recurring_run_id} is disabled")
        ref = job["pipeline_version_reference"]
        package = self.versions[ref["pipeline_version_id"]]["_package"]
        self._index[recurring_run_id] = index = self._index.get(recurring_run_id, 0) + 1
        macros = {
            "[[ScheduledTime]]": scheduled.strftime("%Y%m%d%H%M%S"),
            "[[Index]]": str(index),
            "[[RunUUID]]": str(uuid.uuid4()),
        }
        params = {}
        for key, value in (job.get("runtime_config") or {}).get("parameters", {}).items():
            if isinstance(value, str):
                for macro, sub in macros.items():
                    value = value.replace(macro, sub)
            params[key] = value
        return package, params

    # ------------------------------------------------------------------ routes
    def handle(self, method: str, url: str, headers, body: bytes) -> tuple[int, dict]:
        self.requests.append((method, url))
        if self.fail_with:
            raise ApiError(self.fail_with, 13, "internal error injected by the test")
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, 16, "Unauthenticated: missing or invalid bearer token")
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        if not path.startswith("/apis/v2beta1/"):
            raise ApiError(404, 5, f"Not Found: {path}")
        route = path[len("/apis/v2beta1/") :]
        with self._lock:
            if route == "healthz" and method == "GET":
                return _ok("V2beta1GetHealthzResponse", {"multi_user": False})
            if route == "experiments":
                return self._experiments(method, query, body)
            if route.startswith("experiments/") and method == "GET":
                return _ok(
                    "V2beta1Experiment", self._get(self.experiments, route.split("/")[1], "experiment")
                )
            if route == "pipelines" and method == "GET":
                items = _filter(query, list(self.pipelines.values()), {})
                return _ok("V2beta1ListPipelinesResponse", {"pipelines": items, "total_size": len(items)})
            if route == "pipelines/upload" and method == "POST":
                return self._upload(query, headers, body)
            if route == "pipelines/upload_version" and method == "POST":
                return self._upload_version(query, headers, body)
            m = re.fullmatch(r"pipelines/([^/]+)/versions", route)
            if m and method == "GET":
                self._get(self.pipelines, m[1], "pipeline")
                versions = [self._public(v) for v in self.versions.values() if v["pipeline_id"] == m[1]]
                items = _filter(query, versions, {})
                return _ok(
                    "V2beta1ListPipelineVersionsResponse",
                    {"pipeline_versions": items, "total_size": len(items)},
                )
            if route == "recurringruns":
                return self._recurring(method, query, body)
            m = re.fullmatch(r"recurringruns/([^/:]+)(?::(enable|disable))?", route)
            if m:
                job = self._get(self.recurring, m[1], "recurring run")
                if m[2] and method == "POST":
                    job["mode"] = "ENABLE" if m[2] == "enable" else "DISABLE"
                    job["status"] = "ENABLED" if m[2] == "enable" else "DISABLED"
                    return 200, {}
                if method == "GET":
                    return _ok("V2beta1RecurringRun", job)
                if method == "DELETE":
                    del self.recurring[m[1]]
                    return 200, {}
            if route == "runs" and method == "POST":
                run = self._json(body, "V2beta1Run")
                run.update(run_id=str(uuid.uuid4()), state="PENDING", created_at=_now())
                self.runs[run["run_id"]] = run
                return _ok("V2beta1Run", run)
        raise ApiError(404, 5, f"Not Found: {method} {path}")

    def _get(self, table: dict, key: str, what: str) -> dict:
        if key not in table:
            raise ApiError(404, 5, f"{what} {key} not found")
        return table[key]

    @staticmethod
    def _json(body: bytes, model: str) -> dict:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise ApiError(400, 3, f"request body is not JSON: {exc}") from None
        check(data, model, model)
        return data

    def _experiments(self, method: str, query: dict, body: bytes) -> tuple[int, dict]:
        if method == "GET":
            items = _filter(query, list(self.experiments.values()), {})
            return _ok("V2beta1ListExperimentsResponse", {"experiments": items, "total_size": len(items)})
        exp = self._json(body, "V2beta1Experiment")
        if not exp.get("display_name"):
            raise ApiError(400, 3, "Experiment name is empty. Please specify a valid experiment name")
        if any(e["display_name"] == exp["display_name"] for e in self.experiments.values()):
            raise ApiError(409, 6, f"experiment {exp['display_name']} already exists")
        exp.update(experiment_id=str(uuid.uuid4()), created_at=_now(), storage_state="AVAILABLE")
        self.experiments[exp["experiment_id"]] = exp
        return _ok("V2beta1Experiment", exp)

    @staticmethod
    def _file(headers, body: bytes) -> tuple[str, bytes]:
        msg = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + headers.get("Content-Type", "").encode() + b"\r\n\r\n" + body
        )
        for part in msg.get_payload() if msg.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == "uploadfile":
                payload = part.get_payload(decode=True)
                try:
                    yaml.safe_load_all(payload.decode()).__next__()
                except Exception:
                    raise ApiError(400, 3, "Failed to read a pipeline spec file") from None
                return part.get_filename() or "", payload
        raise ApiError(400, 3, "Failed to read pipeline from file")

    def _upload(self, query: dict, headers, body: bytes) -> tuple[int, dict]:
        filename, package = self._file(headers, body)
        name = query.get("name", [""])[0] or filename
        if any(p["display_name"] == name for p in self.pipelines.values()):
            raise ApiError(409, 6, "Failed to create a pipeline and a pipeline version")
        pipeline = {
            "pipeline_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "description": query.get("description", [""])[0],
            "created_at": _now(),
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, package)
        return _ok("V2beta1Pipeline", pipeline)

    def _upload_version(self, query: dict, headers, body: bytes) -> tuple[int, dict]:
        filename, package = self._file(headers, body)
        pipeline_id = query.get("pipelineid", [""])[0]
        if not pipeline_id:
            raise ApiError(400, 3, "Failed to create a pipeline version")
        self._get(self.pipelines, pipeline_id, "pipeline")
        name = query.get("name", [""])[0] or filename
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in self.versions.values()):
            raise ApiError(409, 6, "Failed to create a pipeline version")
        return _ok("V2beta1PipelineVersion", self._public(self._add_version(pipeline_id, name, package)))

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "created_at": _now(),
            "_package": package.decode(),
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    @staticmethod
    def _public(version: dict) -> dict:
        return {k: v for k, v in version.items() if not k.startswith("_")}

    def _recurring(self, method: str, query: dict, body: bytes) -> tuple[int, dict]:
        if method == "GET":
            items = list(self.recurring.values())
            if query.get("experiment_id"):
                items = [r for r in items if r.get("experiment_id") == query["experiment_id"][0]]
            return _ok("V2beta1ListRecurringRunsResponse", {"recurringRuns": items, "total_size": len(items)})
        job = self._json(body, "V2beta1RecurringRun")
        if not job.get("display_name"):
            raise ApiError(400, 3, "Recurring run's name cannot be empty")
        concurrency = int(job.get("max_concurrency") or 0)
        if not 1 <= concurrency <= 10:
            raise ApiError(
                400,
                3,
                f"Max concurrency of a recurring run must be at least 1 and at most 10. Received {concurrency}",
            )
        trigger = job.get("trigger") or {}
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        if cron is not None and not _cron_ok(cron):
            raise ApiError(
                400,
                3,
                f"Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron): {cron}",
            )
        interval = (trigger.get("periodic_schedule") or {}).get("interval_second")
        if interval is not None and int(interval) < 1:
            raise ApiError(
                400,
                3,
                f"Found invalid period schedule interval {interval}. Set at interval to least 1 second",
            )
        if not job.get("experiment_id") or job["experiment_id"] not in self.experiments:
            raise ApiError(
                400, 3, f"Failed to create a recurring run: experiment {job.get('experiment_id')!r} not found"
            )
        ref = job.get("pipeline_version_reference")
        if ref:
            version = self.versions.get(ref.get("pipeline_version_id", ""))
            if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
                raise ApiError(400, 3, f"pipeline version reference {ref} does not exist")
        elif not job.get("pipeline_spec"):
            raise ApiError(
                400, 3, "Failed to create a recurring run: no pipeline spec or pipeline version reference"
            )
        enabled = job.get("mode") == "ENABLE"
        job.update(
            recurring_run_id=str(uuid.uuid4()),
            max_concurrency=str(concurrency),
            status="ENABLED" if enabled else "DISABLED",
            created_at=_now(),
            updated_at=_now(),
            no_catchup=bool(job.get("no_catchup", False)),
        )
        self.recurring[job["recurring_run_id"]] = job
        return _ok("V2beta1RecurringRun", job)


def schedule(action: str, url: str, *args: str) -> int:
    """Exit code of ``diffucoder pipeline schedule ACTION --host URL ARGS...`` run in this process."""
    from diffucoder.cli import main

    return main(["pipeline", "schedule", action, "--host", url, *args])


def serve(api: KfpApiServer) -> tuple[ThreadingHTTPServer, str]:
    """Start ``api`` on a free loopback port in a thread; returns (server, base URL)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, payload = api.handle(method, self.path, self.headers, body)
            except ApiError as exc:
                status, payload = exc.status, {"error": exc.message, "code": exc.code, "message": exc.message}
            except AssertionError as exc:  # the server's own response failed its model check
                status, payload = 500, {"error": str(exc), "code": 13, "message": str(exc)}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's naming
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

        def do_DELETE(self):  # noqa: N802
            self._answer("DELETE")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
