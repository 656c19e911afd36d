"""A real S3-compatible server on 127.0.0.1 (moto's server mode) as a subprocess, its request log kept.

The e2e conftest starts one per test session and makes a fresh bucket per test; benchmarks/remote_cache.py
and benchmarks/ray_backend.py start their own (this module has no pytest in it). The CLI reaches it through
s3fs exactly as it would reach AWS: the endpoint comes from fsspec's own `FSSPEC_S3_ENDPOINT_URL` variable
and the credentials from the `AWS_*` ones. The request log lets a caller count the requests a command made
(a read-only run writes nothing, a cached rerun sends none).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server, started in `work` (its request log is work/moto.log) by `python`; close() stops it."""

    def __init__(self, work: Path, python: str = sys.executable) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log = work / "moto.log"
        self._client: Any = None
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"moto server did not start: {tail}") from None
                time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the server as the CLI does: the credentials and fsspec's endpoint."""
        return {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:  # boto3 ships no types here
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            )
        return self._client

    def requests(self) -> list[str]:
        """Request lines the server has logged so far, e.g. `PUT /bucket/objects/ab/... HTTP/1.1`."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace")) if self.log.exists() else ""
        return [line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2 and "HTTP/" in line]

    def request_count(self, settle: float = 0.3) -> int:
        """How many requests the server has logged, after `settle` seconds (it logs a request after answering)."""
        time.sleep(settle)
        return len(self.requests())

    def new_bucket(self, tag: str = "b") -> str:
        name = f"{tag}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def object_sizes(self, bucket: str, prefix: str = "cache/objects/") -> dict[str, int]:
        """digest -> size of every object under a remote cache's objects/."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"][len(prefix) :].replace("/", ""): o["Size"] for p in pages for o in p.get("Contents", [])}

    def drop_bucket(self, bucket: str) -> None:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for p in pages:
            for o in p.get("Contents", []):
                self.client().delete_object(Bucket=bucket, Key=o["Key"])
        self.client().delete_bucket(Bucket=bucket)

    def cpu_seconds(self) -> float:
        """CPU time the server has used (user + system), from /proc."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Bucket:
    server: S3Server
    name: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}/cache"

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def keys(self, prefix: str = "cache/") -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)
