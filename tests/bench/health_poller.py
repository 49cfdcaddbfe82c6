"""A load balancer's view of ``/healthz``: polled from a process of its own.

``python -m tests.bench.health_poller URL INTERVAL`` sends ``GET URL/healthz`` every
``INTERVAL`` seconds on one keep-alive connection until its stdin closes.  It prints ``ready``
once started, and at the end one JSON object: ``{"latencies": [seconds...], "failures":
[reason...]}``.

Measured from inside the benchmark's own Trio loop (30 booths and the fake Gemini on one core,
~90 % busy), half of the reported latency was that loop's: 53 ms p95 there, 22 ms from this
process at the same moment.  A load balancer polls from a process of its own, so do we.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx


def main() -> None:
    url, interval = sys.argv[1], float(sys.argv[2])
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    latencies: list[float] = []
    failures: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        print("ready", flush=True)
        tick = time.monotonic()
        while not stop.is_set():
            start = time.perf_counter()
            try:
                response = client.get("/healthz")
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures.append(str(response.status_code))
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            tick += interval
            stop.wait(max(0.0, tick - time.monotonic()))
    json.dump({"latencies": latencies, "failures": failures}, sys.stdout)


if __name__ == "__main__":
    main()
