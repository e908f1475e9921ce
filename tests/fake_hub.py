"""A Hugging Face hub on 127.0.0.1 serving model folders in the hub's file layout.

What huggingface_hub 0.36 asks for and reads (``HF_ENDPOINT`` points at this server):

- ``GET /api/models/ORG/NAME[/revision/REV][?blobs=True]``: ``sha`` (the commit) and
  ``siblings`` (``rfilename``, with ``blobs``: ``size``, ``blobId``, ``lfs.sha256``);
- ``HEAD /ORG/NAME/resolve/REV/FILE``: ``X-Repo-Commit``, ``ETag`` (the LFS sha256 for LFS files,
  else the git blob id: the cache's blob name) and ``Content-Length``;
- ``GET`` of the same URL, with ``Range: bytes=N-`` when resuming an ``.incomplete`` blob (206).
- An unknown repo is a 404 with ``X-Error-Code: RepoNotFound``.

Faults, per file name: ``drop_after[name] = n`` sends the headers of the whole file, then n bytes,
then closes the connection (once); ``stall_after[name] = n`` sends n bytes and then waits until
``release`` is set (a link that hangs, until the client is killed).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "5a1e" * 10
LFS_SUFFIXES = (".safetensors", ".bin")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, repos: dict[str, Path], *, sizes: dict[str, int] | None = None) -> None:
        self.repos = {
            repo: {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}
            for repo, d in repos.items()
        }
        self.claimed_sizes = sizes or {}  # file -> the size the API claims (disk check tests)
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.drop_after: dict[str, int] = {}
        self.stall_after: dict[str, int] = {}
        self.release = threading.Event()
        self.stalled = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- what the hub says about a file ------------------------------------------------
    @staticmethod
    def etag(name: str, data: bytes) -> str:
        if name.endswith(LFS_SUFFIXES):
            return hashlib.sha256(data).hexdigest()
        return git_blob_id(data)

    def info(self, repo: str) -> dict:
        siblings = []
        for name, data in self.repos[repo].items():
            size = self.claimed_sizes.get(name, len(data))
            item = {"rfilename": name, "size": size, "blobId": git_blob_id(data)}
            if name.endswith(LFS_SUFFIXES):
                item["lfs"] = {"size": size, "sha256": self.etag(name, data), "pointerSize": 134}
            siblings.append(item)
        return {
            "_id": "0" * 24,
            "id": repo,
            "modelId": repo,
            "sha": COMMIT,
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }

    # -- serving -----------------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _not_found(self, code: str) -> None:
                self._send(404, b'{"error":"not found"}', {"X-Error-Code": code})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                hub.requests.append((self.command, self.path, rng))
                path = self.path.split("?", 1)[0]
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
                if m:
                    repo, rev = m.group(1), m.group(2)
                    if repo not in hub.repos:
                        return self._not_found("RepoNotFound")
                    if rev not in (None, "main", COMMIT):
                        return self._not_found("RevisionNotFound")
                    body = json.dumps(hub.info(repo)).encode()
                    return self._send(200, body, {"Content-Type": "application/json"})
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if not m or m.group(1) not in hub.repos:
                    return self._not_found("RepoNotFound")
                repo, rev, name = m.groups()
                if rev not in ("main", COMMIT):
                    return self._not_found("RevisionNotFound")
                data = hub.repos[repo].get(name)
                if data is None:
                    return self._not_found("EntryNotFound")
                self._file(name, data, rng)

            def _file(self, name: str, data: bytes, rng: str | None) -> None:
                start = 0
                if rng:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hub.etag(name, data)}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if self.command == "HEAD":
                    return
                cut = hub.drop_after.pop(name, None)
                stall = hub.stall_after.pop(name, None)
                if cut is not None or stall is not None:
                    self.wfile.write(body[: cut if cut is not None else stall])
                    self.wfile.flush()
                    if stall is not None:
                        hub.stalled.set()
                        hub.release.wait(60)
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def gets(self, name: str) -> list[str | None]:
        """The Range headers of the GETs of ``name`` (None: from the start)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + name)]
