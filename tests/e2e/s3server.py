"""A real S3-compatible server on 127.0.0.1 (moto's server mode), one per test session, a fresh bucket per test.

The CLI reaches it through s3fs exactly as it would reach AWS: the endpoint comes from fsspec's own
`FSSPEC_S3_ENDPOINT_URL` variable and the credentials from the `AWS_*` ones. The server's request log
is kept, so a test can count the requests a command made (a read-only run writes nothing).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    log: Path

    def client(self):  # noqa: ANN201 - boto3 ships no types here
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def requests(self) -> list[str]:
        """Request lines the server has logged so far, e.g. `PUT /bucket/objects/ab/... HTTP/1.1`."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace")) if self.log.exists() else ""
        return [line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2 and "HTTP/" in line]


@dataclass
class Bucket:
    server: S3Server
    name: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}/cache"

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": self.server.endpoint}

    def keys(self, prefix: str = "cache/") -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    pytest.importorskip("moto.server", reason="moto[server] is part of the test extra")
    pytest.importorskip("s3fs", reason="s3fs is the remote extra")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.1)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return Bucket(s3_server, name)
