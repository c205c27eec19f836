"""The one place where exceptions become gRPC statuses: DESIGN.md's error table, as code."""
from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Callable, NoReturn

import grpc
from grpc import StatusCode

from poolscore.server.errors import STATUS_NAMES

from poolscore.server.transport.wire import Unparsable

log = logging.getLogger(__name__)

STATUS_OF = {kind: StatusCode[name] for kind, name in STATUS_NAMES.items()}


def code_of(err: Exception) -> StatusCode:
    for kind, code in STATUS_OF.items():
        if isinstance(err, kind):
            return code
    return StatusCode.INTERNAL


def _abort(servicer, context: grpc.ServicerContext, err: Exception, rpc: str, start: float) -> NoReturn:
    if not context.is_active():  # the caller cancelled or went away: not a bug, and no one reads the status
        servicer.metrics.errors.labels(code=StatusCode.CANCELLED.name).inc()
        servicer.metrics.finished(rpc, StatusCode.CANCELLED.name, time.perf_counter() - start)
        context.abort(StatusCode.CANCELLED, "the caller cancelled the call")
    code = code_of(err)
    servicer.metrics.errors.labels(code=code.name).inc()
    servicer.metrics.finished(rpc, code.name, time.perf_counter() - start)
    if code is StatusCode.INTERNAL:
        log.exception("bug while serving a request")  # not the caller's fault: keep the trace
        context.abort(code, "internal error (see server log)")
    context.abort(code, str(err))


def maps_errors(method: Callable) -> Callable:
    """Wrap an RPC so that every exception it raises becomes its status (streams too), and
    count it (poolscore_requests_total by RPC and code, and its duration)."""
    rpc = method.__name__
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def streaming(self, request, context):
            start = time.perf_counter()
            try:
                yield from method(self, request, context)
            except Exception as err:  # noqa: BLE001 - mapped to a status (or, for a gone caller, counted)
                _abort(self, context, err, rpc, start)
            self.metrics.finished(rpc, "OK", time.perf_counter() - start)
        return streaming

    @functools.wraps(method)
    def unary(self, request, context):
        start = time.perf_counter()
        try:
            if isinstance(request, Unparsable):  # even an RPC that reads no field refuses garbage
                raise request.error
            reply = method(self, request, context)
        except Exception as err:  # noqa: BLE001
            _abort(self, context, err, rpc, start)
        self.metrics.finished(rpc, "OK", time.perf_counter() - start)
        return reply
    return unary
