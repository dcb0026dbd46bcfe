"""A throwaway PostgreSQL server for the store contract tests (Debian's postgresql package).

Started once per pytest session when the server binaries exist; the tests then also run against
``NBMLOPS_TEST_POSTGRES_URL``. PostgreSQL refuses to run as root, so as root the cluster is
created and started as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir: Path | None = None
        self.url: str | None = None
        self._as_user: list[str] = []
        self.port = 0

    def start(self) -> str | None:
        if self.bin is None:
            return None
        self.dir = Path(tempfile.mkdtemp(prefix="nbmlops-pg-"))
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                return None
            shutil.chown(self.dir, "postgres")
            shutil.chown(sock, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        port = self.port = _free_port()
        run = self._run
        run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.resume()
        run(str(self.bin / "createdb" if (self.bin / "createdb").exists() else "createdb"),
            "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "nbmlops_test")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nbmlops_test"
        return self.url

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True,
                       timeout=60)

    def pause(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected), keeping its data."""
        assert self.dir is not None and self.bin is not None
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-m", "fast",
                  "stop")

    def resume(self) -> None:
        """Start the server (again) on the same port."""
        assert self.dir is not None and self.bin is not None
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-l",
                  str(self.dir / "log"), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.dir / 'sock'} -F", "start")

    def stop(self) -> None:
        if self.dir is None or self.bin is None:
            return
        subprocess.run([*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def fresh_database(base_url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``base_url`` (dropped first if it
    exists); returns its URL (same user, password and host)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
