"""The KServe v2 / Open Inference Protocol over HTTP/REST, on --http-port: health, metadata and
infer, so curl and HTTP clients (tritonclient.http) work as they do against Triton.

    GET  /v2/health/live | /v2/health/ready      200 when live / ready
    GET  /v2                                     server metadata
    GET  /v2/models/NAME[/versions/V]            model metadata;  .../ready: 200 or 400
    POST /v2/models/NAME[/versions/V]/infer      JSON tensors, or Triton's binary tensor extension
    GET  /v2/models/NAME/config, .../stats, /v2/models/stats; POST /v2/repository/index   (Triton's)

Each request becomes the gRPC facade's protobuf request and goes through the same code
(oip.py), so the two protocols cannot drift apart. Errors are `{"error": "..."}` with a 400
(bad input), 401 (no valid token), 404 (no such model or path), 429 (over a limit) or 500."""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from google.protobuf import json_format
from prometheus_client.exposition import ThreadingWSGIServer

from poolscore.server.errors import BadInput, BadToken, ModelNotFound, OverLimit, PoolscoreError, UnknownStrategy
from poolscore.server.ingest.dtypes import BY_WIRE
from poolscore.server.transport.auth import PeerLimiter, Principals
from poolscore.server.transport.oip import InferenceServicer
from poolscore.v1.oip import inference_pb2 as oip

log = logging.getLogger(__name__)

HEADER_LENGTH = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"  # Triton's binary extension: the JSON part's bytes
_STATUS = {BadInput: "400 Bad Request", UnknownStrategy: "400 Bad Request", ModelNotFound: "404 Not Found",
           OverLimit: "429 Too Many Requests", BadToken: "401 Unauthorized"}
_OPEN = ("/v2/health/",)  # probes need no token


class Rest:
    def __init__(self, oip_servicer: InferenceServicer, principals: Principals, max_bytes: int,
                 limiter: PeerLimiter | None = None, on_denied: Callable[[str], None] = lambda reason: None,
                 draining: Callable[[], bool] = lambda: False) -> None:
        self.oip, self.principals, self.max_bytes, self.draining = oip_servicer, principals, max_bytes, draining
        self.limiter, self.on_denied = limiter or PeerLimiter(), on_denied  # gRPC's: one budget of failures per peer

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        try:
            status, headers, body = self._route(environ)
        except PoolscoreError as err:
            status, headers, body = _error(next((s for k, s in _STATUS.items() if isinstance(err, k)),
                                                "500 Internal Server Error"), str(err))
        except Exception:  # noqa: BLE001 - a bug: the trace is logged, the caller told no more
            log.exception("bug while serving a REST request")
            status, headers, body = _error("500 Internal Server Error", "internal error (see server log)")
        start_response(status, headers + [("Content-Length", str(len(body)))])
        return [body]

    def _route(self, environ) -> tuple[str, list, bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if self.principals.required and not path.startswith(_OPEN):
            peer = environ.get("REMOTE_ADDR", "")
            wait = self.limiter.wait_s(peer)
            if wait > 0:
                self.on_denied("rate_limited")
                raise BadToken(f"{path}: too many failed authentications from {peer}; retry in {wait:.1f} s")
            if self.principals.of([("authorization", environ.get("HTTP_AUTHORIZATION", ""))]) is None:
                self.limiter.failed(peer)
                self.on_denied("bad_token")
                raise BadToken(f"{path}: no valid token; send the header 'Authorization: Bearer <token>'")
        parts = [p for p in path.split("/") if p]
        if method == "GET" and parts == ["v2", "health", "live"]:
            return _json({"live": True})
        if method == "GET" and parts == ["v2", "health", "ready"]:  # a draining server is live, not ready
            ready = not self.draining()
            return ("200 OK" if ready else "503 Service Unavailable"), [("Content-Type", "application/json")], \
                json.dumps({"ready": ready}).encode()
        if method == "GET" and parts == ["v2"]:
            return _json({"name": "poolscore", "version": self.oip.version, "extensions": ["binary_tensor_data"]})
        if method == "GET" and parts == ["v2", "models", "stats"]:
            return _json(_dict(self.oip.stats("")))
        if method == "POST" and parts == ["v2", "repository", "index"]:
            ready = bool(_body(environ, self.max_bytes).get("ready", False))
            return _json([_dict(m) for m in self.oip.index(ready).models])
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            name, rest = parts[2], parts[3:]
            if rest[:1] == ["versions"]:
                rest = rest[2:]  # one version of each model: "1", whatever is asked
            if method == "GET" and rest == []:
                return _json(_dict(self.oip.metadata(name)))
            if method == "GET" and rest == ["config"]:
                return _json(_dict(self.oip.config(name).config))
            if method == "GET" and rest == ["stats"]:
                return _json(_dict(self.oip.stats(name)))
            if method == "GET" and rest == ["ready"]:
                ready = self.oip.ready(name)
                return ("200 OK" if ready else "400 Bad Request"), [("Content-Type", "application/json")], \
                    json.dumps({"ready": ready}).encode()
            if method == "POST" and rest == ["infer"]:
                return self._infer(name, environ)
        return _error("404 Not Found", f"{method} {path}: not a KServe v2 endpoint here (see /v2, /v2/models/NAME)")

    def _infer(self, name: str, environ) -> tuple[str, list, bytes]:
        length = _length(environ, self.max_bytes)
        body = environ["wsgi.input"].read(length)
        head_bytes = int(environ.get(HEADER_LENGTH) or len(body))
        try:
            head = json.loads(body[:head_bytes] or b"{}")
        except ValueError as err:
            raise BadInput("body", f"not JSON: {err}") from None
        req, binary_out = _request(name, head, memoryview(body)[head_bytes:])
        reply = self.oip.infer(req)
        return _reply(reply, binary_out)


def _request(name: str, head: dict, blobs: memoryview) -> tuple[oip.ModelInferRequest, bool]:
    """The JSON (and binary parts) as a ModelInferRequest; and whether outputs go back binary."""
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list):
        raise BadInput("inputs", "the body needs a list of inputs: {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}")
    req = oip.ModelInferRequest(model_name=name, id=str(head.get("id", "")))
    params = dict(head.get("parameters") or {})
    binary_out = bool(params.pop("binary_data_output", False))
    _set_parameters(req.parameters, params, "parameters")
    offset = 0
    for i, t in enumerate(head["inputs"]):
        field = f"inputs[{i}]"
        if not isinstance(t, dict) or not {"name", "shape", "datatype"} <= set(t):
            raise BadInput(field, "needs name, shape and datatype")
        dtype = str(t["datatype"])
        if dtype not in BY_WIRE:
            raise BadInput(f"{field}.datatype", f"{dtype!r} is not one of {', '.join(BY_WIRE)}")
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:  # Triton's binary extension: the bytes follow the JSON, in input order
            data = bytes(blobs[offset:offset + int(size)])
            offset += int(size)
        else:
            values = np.asarray(t.get("data", []), dtype=BY_WIRE[dtype].name)
            data = values.tobytes()
        req.inputs.add(name=str(t["name"]), datatype=dtype, shape=[int(n) for n in t["shape"]])
        req.raw_input_contents.append(data)
    for o in head.get("outputs") or []:
        req.outputs.add(name=str(o.get("name", "")))
        binary_out = binary_out or bool((o.get("parameters") or {}).get("binary_data", False))
    return req, binary_out


def _set_parameters(target, params: dict, field: str) -> None:
    for key, v in params.items():
        p = target[key]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        elif isinstance(v, float):
            p.double_param = v
        elif isinstance(v, str):
            p.string_param = v
        else:
            raise BadInput(f"{field}.{key}", f"a bool, number or string, got {type(v).__name__}")


def _reply(reply: oip.ModelInferResponse, binary: bool) -> tuple[str, list, bytes]:
    outputs, blobs = [], []
    for t, raw in zip(reply.outputs, reply.raw_output_contents):
        out = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if binary:
            out["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            out["data"] = np.frombuffer(raw, BY_WIRE[t.datatype].name).tolist()
        outputs.append(out)
    head = json.dumps({"model_name": reply.model_name, "model_version": reply.model_version, "id": reply.id,
                       "outputs": outputs}).encode()
    headers = [("Content-Type", "application/octet-stream" if binary else "application/json")]
    if binary:
        headers.append(("Inference-Header-Content-Length", str(len(head))))
    return "200 OK", headers, head + b"".join(blobs)


def _dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _length(environ, most: int) -> int:
    """The body's Content-Length: a whole number of bytes, at most `most` (never 'read to the end')."""
    text = environ.get("CONTENT_LENGTH") or "0"
    if not text.isdigit():
        raise BadInput("Content-Length", f"{text!r} is not a number of bytes")
    if int(text) > most:
        raise OverLimit(f"request: {text} bytes, over the limit of {most} (--max-message-bytes)")
    return int(text)


def _body(environ, most: int) -> dict:
    length = _length(environ, most)
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        return json.loads(raw or b"{}")
    except ValueError as err:
        raise BadInput("body", f"not JSON: {err}") from None


def _json(value) -> tuple[str, list, bytes]:
    return "200 OK", [("Content-Type", "application/json")], json.dumps(value).encode()


def _error(status: str, message: str) -> tuple[str, list, bytes]:
    return status, [("Content-Type", "application/json")], json.dumps({"error": message}).encode()


def serve(app: Callable, host: str, port: int) -> WSGIServer:
    """The REST app on its own port, a thread per request."""
    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    http = make_server(host, port, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=http.serve_forever, name="poolscore-rest", daemon=True).start()
    return http
