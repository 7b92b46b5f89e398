"""Test tooling: a local HTTP endpoint that serves model repositories the way the Hugging
Face Hub does, for the real ``huggingface_hub`` client and its ``hf download`` CLI
(``HF_ENDPOINT`` pointing here). It is not a Hub: it serves only what ``hf download`` and
``HfApi.model_info`` call, from repositories held in memory.

Routes (as huggingface_hub 1.x/2.x calls them: ``HfApi.model_info``, ``HfApi.repo_info``,
``HfApi.list_repo_tree``, ``file_download.get_hf_file_metadata`` and ``http_get``):

- ``GET /api/models/{org}/{repo}/revision/{rev}`` (``?blobs=true`` adds each sibling's
  ``size``, ``blobId`` and ``lfs``): the model info, ``sha`` the commit of ``rev``;
- ``GET /api/models/{org}/{repo}/tree/{rev}?recursive=...``: the file list (one page);
- ``HEAD`` and ``GET /{org}/{repo}/resolve/{rev}/{file}``: the file, with the Hub's
  ``X-Repo-Commit``, ``ETag`` (a quoted SHA-256 for the LFS files, ``*.safetensors``; the
  git blob id otherwise) and ``Content-Length``; ``GET`` honours ``Range: bytes=N-`` with
  ``206 Partial Content``, which the client uses to resume an ``.incomplete`` file.

Errors carry the Hub's ``X-Error-Code`` / ``X-Error-Message`` headers, which
``huggingface_hub.utils.hf_raise_for_status`` maps to its exceptions:

- an unknown repository: 401 without a token, 404 with one, ``X-Error-Code: RepoNotFound``
  (the Hub answers 401 to anonymous callers so as not to reveal private repositories);
- an unknown revision: 404 ``RevisionNotFound``; an unknown file: 404 ``EntryNotFound``;
- a token the Hub does not know: 401, ``X-Error-Message: Invalid credentials in
  Authorization header``;
- a private repository without a token allowed to read it: as an unknown repository;
- a gated repository: its info is public; its files need a token that was granted access,
  else 401 (no token) or 403 (a token without access), ``X-Error-Code: GatedRepo``.

``rate`` limits each file body to that many bytes per second, so a test can kill a
download half-way; ``outage`` makes every request answer 503 (the Hub down); ``requests``
records (method, path, Range header) of every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

LISTEN_HOST = "127.0.0.1"


@dataclass
class HubRepo:
    """A model repository: ``files`` (path -> bytes) at one ``commit`` (40 hex) of branch
    ``main``. ``private``: only ``readers`` see it. ``gated``: its files need a token in
    ``readers``."""

    repo_id: str
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    private: bool = False
    gated: bool = False
    readers: frozenset[str] = frozenset()

    def etag(self, path: str) -> str:
        """The file's ETag as the Hub gives it: SHA-256 for LFS files, the git blob id
        (SHA-1 of ``blob <size>\\0`` + content) for the others."""
        data = self.files[path]
        if _is_lfs(path):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def sibling(self, path: str, blobs: bool) -> dict[str, object]:
        """One entry of ``siblings`` in the model info."""
        entry: dict[str, object] = {"rfilename": path}
        if blobs:
            data = self.files[path]
            entry |= {"size": len(data), "blobId": self.etag(path)}
            if _is_lfs(path):
                entry["lfs"] = {"sha256": self.etag(path), "size": len(data),
                                "pointerSize": 134}
        return entry


def _is_lfs(path: str) -> bool:
    return path.endswith(".safetensors")


@dataclass
class HubState:
    """What the endpoint serves and what it saw; shared with the handler threads."""

    repos: dict[str, HubRepo]
    tokens: frozenset[str]
    rate: float | None = None
    outage: bool = False
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalHub:
    """The endpoint on ``LISTEN_HOST``, a free port, serving ``repos`` (see the module
    docstring). ``tokens``: the tokens the Hub knows (any other is refused). Use as a
    context manager; ``url`` is what HF_ENDPOINT takes."""

    def __init__(self, repos: list[HubRepo], tokens: frozenset[str] = frozenset(),
                 rate: float | None = None) -> None:
        """Bind the port (serving starts with ``start`` or ``with``)."""
        self.state = HubState({repo.repo_id: repo for repo in repos}, tokens, rate)
        self.server = _Server(self.state)
        self.url = f"http://{LISTEN_HOST}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> LocalHub:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def ranged_gets(self) -> list[tuple[str, str]]:
        """(path, Range header) of the file GETs that asked for a range from a byte > 0."""
        with self.state.lock:
            return [(path, rng) for method, path, rng in self.state.requests
                    if method == "GET" and rng and not rng.startswith("bytes=0-")]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        self.state = state
        super().__init__((LISTEN_HOST, 0), _Handler)


class _Refusal(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str,
                 commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests assert on what the client prints, not on the server's log

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        path = unquote(url.path)
        with state.lock:
            state.requests.append((self.command, path, self.headers.get("Range", "")))
        try:
            if state.outage:
                raise _Refusal(HTTPStatus.SERVICE_UNAVAILABLE, "", "Service Unavailable")
            token = self._token()
            if path.startswith("/api/models/"):
                self._api(path.removeprefix("/api/models/"), parse_qs(url.query), token)
            elif "/resolve/" in path:
                self._resolve(path.lstrip("/"), token, body)
            else:
                raise _Refusal(HTTPStatus.NOT_FOUND, "", f"no route {self.command} {path}")
        except _Refusal as refusal:
            self._refuse(refusal)

    def _token(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header:
            return None
        token = header.removeprefix("Bearer ").strip()
        if token not in self.server.state.tokens:
            raise _Refusal(HTTPStatus.UNAUTHORIZED, "",
                           "Invalid credentials in Authorization header")
        return token

    def _repo(self, repo_id: str, token: str | None) -> HubRepo:
        repo = self.server.state.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.readers):
            status = HTTPStatus.NOT_FOUND if token else HTTPStatus.UNAUTHORIZED
            raise _Refusal(status, "RepoNotFound", "Repository not found")
        return repo

    @staticmethod
    def _commit(repo: HubRepo, revision: str) -> str:
        if revision not in ("main", repo.commit):
            raise _Refusal(HTTPStatus.NOT_FOUND, "RevisionNotFound",
                           f"Invalid rev id: {revision}")
        return repo.commit

    def _api(self, rest: str, query: dict[str, list[str]], token: str | None) -> None:
        org, name, verb, revision = [*rest.split("/", 3), "", "", "", ""][:4]
        repo = self._repo(f"{org}/{name}", token)
        if verb == "revision":
            commit = self._commit(repo, revision)
            blobs = query.get("blobs", [""])[0].lower() == "true"
            self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": commit,
                        "private": repo.private, "gated": "manual" if repo.gated else False,
                        "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                        "siblings": [repo.sibling(p, blobs) for p in sorted(repo.files)]})
        elif verb == "tree":
            self._commit(repo, revision.split("/", 1)[0])
            entries = []
            for path in sorted(repo.files):
                data = repo.files[path]
                entry: dict[str, object] = {"type": "file", "path": path, "size": len(data),
                                            "oid": repo.etag(path)}
                if _is_lfs(path):
                    entry["lfs"] = {"oid": repo.etag(path), "size": len(data),
                                    "pointerSize": 134}
                entries.append(entry)
            self._json(entries)
        else:
            raise _Refusal(HTTPStatus.NOT_FOUND, "", f"no API route {rest}")

    def _resolve(self, rest: str, token: str | None, body: bool) -> None:
        repo_part, _, file_part = rest.partition("/resolve/")
        repo = self._repo(repo_part, token)
        revision, _, filename = file_part.partition("/")
        commit = self._commit(repo, revision)
        if repo.gated and token not in repo.readers:
            status = HTTPStatus.FORBIDDEN if token else HTTPStatus.UNAUTHORIZED
            raise _Refusal(status, "GatedRepo",
                           f"Access to model {repo.repo_id} is restricted and you are not in "
                           "the authorized list" if token else
                           f"Access to model {repo.repo_id} is restricted. You must have "
                           "access to it and be authenticated to access it", commit)
        if filename not in repo.files:
            raise _Refusal(HTTPStatus.NOT_FOUND, "EntryNotFound", "Entry not found", commit)
        data = repo.files[filename]
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and body:
            first = ranged.removeprefix("bytes=").split("-", 1)[0]
            start = int(first) if first.isdigit() else 0
        self.send_response(HTTPStatus.PARTIAL_CONTENT if start else HTTPStatus.OK)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{repo.etag(filename)}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            self._send_body(data[start:])

    def _send_body(self, data: bytes) -> None:
        rate = self.server.state.rate
        step = max(1, int(rate / 20)) if rate else len(data) or 1
        try:
            for offset in range(0, len(data), step):
                self.wfile.write(data[offset:offset + step])
                self.wfile.flush()
                if rate:
                    time.sleep(step / rate)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _json(self, document: object) -> None:
        raw = json.dumps(document).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _refuse(self, refusal: _Refusal) -> None:
        raw = json.dumps({"error": refusal.message}).encode()
        self.send_response(refusal.status)
        if refusal.code:
            self.send_header("X-Error-Code", refusal.code)
        self.send_header("X-Error-Message", refusal.message)
        if refusal.commit:
            self.send_header("X-Repo-Commit", refusal.commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
