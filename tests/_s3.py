"""A real S3-compatible server on loopback for the object-storage tests: moto's server mode
(``moto_server``, installed with the ``test`` extra) in a subprocess on 127.0.0.1:<free port>.

Authentication is on: the server checks signatures against the access keys its own IAM holds,
so a wrong secret is refused as by AWS. :meth:`MotoS3.start` creates one IAM user with full
access and returns its key pair; :meth:`MotoS3.env` is what a user would export (the standard
AWS variables, ``AWS_ENDPOINT_URL`` for the endpoint)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

BUCKET = "nbmlops-test"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoS3:
    """One ``moto_server`` process; stop() ends it (by its pid)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.key_id = ""
        self.secret = ""

    def start(self, timeout: float = 30) -> str:
        port = _free_port()
        server = Path(sys.executable).with_name("moto_server")
        cmd = [str(server)] if server.exists() else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        try:
            self._make_user()
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def _make_user(self) -> None:
        """Turn authentication on after the 3 IAM calls that make our user and its key."""
        import boto3

        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", method="POST",
                                     data=b"3",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="nbmlops")
        iam.put_user_policy(UserName="nbmlops", PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="nbmlops")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.client().create_bucket(Bucket=BUCKET)

    def env(self) -> dict[str, str]:
        """The standard variables a user sets for an S3-compatible endpoint."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION}

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)

    def keys(self, bucket: str = BUCKET, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def fresh_prefix() -> str:
    """An artifact URL of its own for one test: ``s3://nbmlops-test/<32 hex>``."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


_server: MotoS3 | None = None


def shared_server() -> MotoS3:
    """The session's server, started on first use; its env is exported to this process (so
    kernels and subprocesses inherit it)."""
    global _server
    if _server is None:
        server = MotoS3()
        server.start()
        os.environ.update(server.env())
        _server = server
    return _server


def stop_shared_server() -> None:
    global _server
    if _server is not None:
        _server.stop()
        for var in _server.env():
            os.environ.pop(var, None)
        _server = None
