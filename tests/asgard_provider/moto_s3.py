"""An S3-compatible server on loopback (moto) for the production-path tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: Test-only credentials: moto accepts any key pair; nothing here is a real secret.
ACCESS_KEY = "asgard-test-access"
SECRET_KEY = "asgard-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the loopback server listens and the bucket created for the test."""

    endpoint: str
    bucket: str

    def client(self) -> object:
        """A boto3 S3 client for the server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        paginator = self.client().get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        return [
            obj["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def s3_server(bucket: str = "lake") -> Iterator[S3Server]:
    """Run moto's S3 server on a free loopback port with ``bucket`` created; stop it afterwards."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = S3Server(endpoint=f"http://127.0.0.1:{port}", bucket=bucket)
        s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        yield s3
    finally:
        server.stop()
