"""Test programs that cannot be split into values run in a tester process the solution cannot speak for.

A test such as ``assert is_prime(7)``, ``assert all(f(i) > 0 for i in range(9))`` or HumanEval's
``check(candidate)`` decides its verdict by running code, so it cannot be reduced to a value the
server compares. Run inside the solution's process, a solution could write a verdict line on the
result pipe itself. Here the job runs in two processes forked by the executor:

- the *solution process* executes the program and then only answers requests on a private pipe
  pair: call this name, get this attribute, iterate this object. It holds no result pipe.
- the *tester process* holds the result pipe. It executes each test with the solution's top-level
  names bound to :class:`Remote` proxies, so every call into the solution is a request whose answer
  is data (decoded by the codec, so never the solution's code) or a handle to an object that stays in
  the solution process. Its verdicts are its own; it is not dumpable, so a process of the same uid
  cannot read or write its memory, and seccomp forbids ptrace.

Whatever the solution does (exit, write anything on any descriptor, answer with garbage, kill the
tester), the worst outcome for it is a test that did not report, which never passes.
"""

from __future__ import annotations

import builtins
import ctypes
import importlib
import json
import os
import types
from collections.abc import Callable
from typing import Any

from diffucoder.sandbox.codec import CodecError, decode, encode

PR_SET_DUMPABLE = 4
MAX_MESSAGE = 64 * 1024 * 1024


class SolutionGone(BaseException):
    """The solution process closed its end (it exited or crashed) while a test waited for it."""


class RemoteError(Exception):
    """An exception raised in the solution process whose type is not a builtin exception."""


class _Pipe:
    """Newline-delimited JSON messages over a pipe pair (raw os.read/os.write)."""

    def __init__(self, read_fd: int, write_fd: int, *, before_send: Callable[[], None] | None = None):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.before_send = before_send
        self.buffer = b""

    def send(self, msg: Any) -> None:
        if self.before_send is not None:
            self.before_send()
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(self.write_fd, data) :]

    def receive(self) -> Any:
        while b"\n" not in self.buffer:
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk or len(self.buffer) > MAX_MESSAGE:
                raise SolutionGone()
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None


# --- the solution side -------------------------------------------------------------------------------


class SolutionServer:
    """Answers the tester's requests about the loaded program's namespace (runs in the solution process)."""

    def __init__(self, namespace: dict[str, Any], pipe: _Pipe):
        self.namespace, self.pipe = namespace, pipe
        self.objects: dict[int, Any] = {}

    def serve(self) -> None:
        while True:
            request = self.pipe.receive()
            if not isinstance(request, dict):
                continue
            try:
                reply = {"id": request.get("id"), **self._answer(request)}
            except BaseException as exc:  # noqa: BLE001 - the solution's exception is the test's business
                reply = {"id": request.get("id"), "raise": [type(exc).__name__, str(exc)[:500]]}
            self.pipe.send(reply)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "names":
            return {
                "names": {k: self._describe(v) for k, v in self.namespace.items() if not k.startswith("__")}
            }
        target = self._resolve(request.get("target"))
        if op == "call":
            args = [self._resolve(a) for a in request.get("args", [])]
            kwargs = {k: self._resolve(v) for k, v in request.get("kwargs", {}).items()}
            return self._wrap(target(*args, **kwargs))
        if op == "getattr":
            return self._wrap(getattr(target, str(request.get("name"))))
        if op == "setattr":
            setattr(target, str(request.get("name")), self._resolve(request.get("value")))
            return {"value": None}
        if op == "iter":
            return {"items": [self._wrap(v) for v in target]}
        if op == "len":
            return {"value": len(target)}
        if op == "bool":
            return {"value": bool(target)}
        if op == "getitem":
            return self._wrap(target[self._resolve(request.get("key"))])
        if op == "contains":
            return {"value": self._resolve(request.get("item")) in target}
        raise ValueError(f"unknown request {op!r}")

    def _resolve(self, ref: Any) -> Any:
        if isinstance(ref, dict) and set(ref) == {"name"}:
            return self.namespace[ref["name"]]
        if isinstance(ref, dict) and set(ref) == {"handle"}:
            return self.objects[ref["handle"]]
        return decode(ref)

    def _describe(self, value: Any) -> dict[str, Any]:
        if isinstance(value, types.ModuleType):
            return {"module": value.__name__}
        if callable(value):
            return {"callable": True}
        return self._wrap(value)

    def _wrap(self, value: Any) -> dict[str, Any]:
        """Plain data as a value, anything holding an object (or too large to send) as a handle that
        stays here."""
        try:
            encoded = encode(value)
        except CodecError:
            encoded = {"obj": ""}
        if not _holds_object(encoded):
            return {"value": encoded}
        self.objects[id(value)] = value
        return {"handle": id(value), "type": type(value).__qualname__}


def _holds_object(tree: Any) -> bool:
    """Whether an encoded value has an object in it (which the codec would reduce to an inert stand-in)."""
    if isinstance(tree, dict):
        return "obj" in tree or any(_holds_object(v) for v in tree.values())
    if isinstance(tree, list):
        return any(_holds_object(v) for v in tree)
    return False


# --- the tester side ---------------------------------------------------------------------------------


class Remote:
    """A name or object of the solution process, seen from the tester. Equality is identity: an object
    of the solution's never equals a value here, whatever its ``__eq__`` says."""

    __slots__ = ("_client", "_ref", "_type")

    def __init__(self, client: SolutionClient, ref: dict[str, Any], type_name: str):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.request(
            "call",
            self._ref,
            args=[self._client.ref_of(a) for a in args],
            kwargs={k: self._client.ref_of(v) for k, v in kwargs.items()},
        )

    def __getattr__(self, name: str) -> Any:
        return self._client.request("getattr", self._ref, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._client.request("setattr", self._ref, name=name, value=self._client.ref_of(value))

    def __iter__(self):
        return iter(self._client.request("iter", self._ref))

    def __len__(self) -> int:
        return self._client.request("len", self._ref)

    def __bool__(self) -> bool:
        return self._client.request("bool", self._ref) is True

    def __getitem__(self, key: Any) -> Any:
        return self._client.request("getitem", self._ref, key=self._client.ref_of(key))

    def __contains__(self, item: Any) -> bool:
        return self._client.request("contains", self._ref, item=self._client.ref_of(item)) is True

    def __repr__(self) -> str:
        return f"<{self._type} of the solution>"


class SolutionClient:
    """The tester's end of the request pipe."""

    def __init__(self, pipe: _Pipe):
        self.pipe = pipe
        self.next_id = 0

    def ref_of(self, value: Any) -> Any:
        if isinstance(value, Remote):
            return object.__getattribute__(value, "_ref")
        return encode(value)

    def request(self, op: str, target: dict[str, Any] | None, **fields: Any) -> Any:
        self.next_id += 1
        self.pipe.send({"id": self.next_id, "op": op, "target": target, **fields})
        while True:  # replies written ahead of their request (by the solution) are skipped
            reply = self.pipe.receive()
            if isinstance(reply, dict) and reply.get("id") == self.next_id:
                return self._unwrap(reply)

    def _unwrap(self, reply: dict[str, Any]) -> Any:
        if "raise" in reply:
            name, message = (list(reply["raise"]) + ["", ""])[:2]
            cls = getattr(builtins, str(name), None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                raise cls(str(message))
            raise RemoteError(f"{name}: {message}")
        if "handle" in reply:
            return Remote(self, {"handle": reply["handle"]}, str(reply.get("type", "object")))
        if "items" in reply:
            return [self._unwrap(item) for item in reply["items"]]
        if "names" in reply:
            return reply["names"]
        return decode(reply.get("value"))

    def namespace(self) -> dict[str, Any]:
        """The test's globals: the solution's top-level names as proxies, modules imported here."""
        namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        for name, described in self.request("names", None).items():
            if "module" in described:
                try:
                    namespace[name] = importlib.import_module(str(described["module"]))
                except ImportError:
                    continue
            elif "callable" in described:
                namespace[name] = Remote(self, {"name": name}, name)
            else:
                namespace[name] = self._unwrap(described)
        return namespace


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: other processes of the same uid may not ptrace-attach, read or write
    /proc/<pid>/mem, or use process_vm_* on this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
