"""Retrying UNAVAILABLE: a server restarting, a replica draining, checkpoints catching up.

Only UNAVAILABLE is retried (the server was not reached, or asked to be asked again): every
other status is an answer. And only once this client has reached the server: a server never
reached (a wrong address, a TLS handshake refused) is reported at once, as a restart or a drain
is not; `Client.wait_ready` is what waits for a server that is still starting. Waits grow exponentially with full jitter, so that the clients of
a restarted replica do not come back in step; an outage is given up on after `total_s`."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import grpc

from poolscore.client.errors import Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    total_s: float = 60.0  # give up on an outage after this long (0: never retry)
    first_s: float = 0.05
    most_s: float = 2.0

    def outage(self) -> "Outage":
        return Outage(self)


class Outage:
    """One run of failures: `wait(err)` sleeps before the next try, or re-raises err once the
    outage has lasted total_s; `recovered()` starts the next outage's clock afresh."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.recovered()

    def recovered(self) -> None:
        self._since, self._delay = None, self.backoff.first_s

    def wait(self, err: Exception, reached: bool = True) -> None:
        if not (reached and retryable(err)):
            raise err
        now = time.monotonic()
        self._since = self._since if self._since is not None else now
        left = self._since + self.backoff.total_s - now
        if left <= 0:
            raise err
        time.sleep(min(left, random.uniform(0, self._delay)))
        self._delay = min(2 * self._delay, self.backoff.most_s)


def retryable(err: Exception) -> bool:
    return isinstance(err, Unavailable) and err.code == grpc.StatusCode.UNAVAILABLE


def retrying(call: Callable[[], T], backoff: Backoff, reached: Callable[[], bool] = lambda: True) -> T:
    """call(), tried again while it raises UNAVAILABLE (once reached() says the server was
    reached before), for up to backoff.total_s."""
    outage = backoff.outage()
    while True:
        try:
            return call()
        except Unavailable as err:
            outage.wait(err, reached())
