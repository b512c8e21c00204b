"""A small loopback fake of the Hugging Face Hub, for tests only (not part of the product).

It implements the HTTP endpoints that ``huggingface_hub`` 2.x calls for ``create_repo``, ``upload_folder``
(README validation, pre-upload, LFS batch + upload + verify, ndjson commit) and for downloads (repo info,
tree listing, ``HEAD``/``GET`` on ``resolve/<revision>/<path>`` with ``X-Repo-Commit``, ``ETag``,
``X-Linked-Etag``/``X-Linked-Size``), plus ``whoami``. The endpoints follow the client's source
(``huggingface_hub/_commit_api.py``, ``lfs.py``, ``file_download.py``, ``hf_api.py``).

Storage is plain LFS: the Xet token endpoints answer 501 with a message. ``huggingface_hub`` uploads through
Xet whenever ``hf_xet`` is installed, so clients pointed at this server must set ``HF_HUB_DISABLE_XET=1``
(or patch ``huggingface_hub.constants.HF_HUB_DISABLE_XET``). Downloads never use Xet here because the
server sends no ``X-Xet-Hash`` header.

Permissions: write calls need a known token (401 otherwise) and a namespace equal to the token's user or
one of its organisations (403 otherwise). Private repos are visible to their owner only (404
``RepoNotFound`` for anyone else, as on the Hub). A commit is applied in one step, or not at all.

Creating a repo that exists answers 409 with a JSON body carrying the repo's ``url``, as the Hub does (that
is what ``create_repo(exist_ok=True)`` reads); ``delete_repo`` is served too.

Faults, for tests of what a client does when the network or the server misbehaves: :meth:`FakeHub.inject`
makes the N-th request matching a method / path pattern (and the ``times - 1`` matching requests after it) fail
in one of these ways:

* ``"refuse"``: the connection is reset before the request is read (nothing is applied);
* ``"drop"``: the request is read, nothing is applied, and the connection is closed without an answer;
* ``"drop-after-apply"``: the request is applied, then the connection is closed without an answer;
* ``"500"`` / ``"500-after-apply"``: an HTTP 500 answer, before / after applying the request.

Bounded: request bodies above ``max_body_bytes`` are refused (413), the server thread is a daemon and
the server shuts itself down after ``lifetime_s`` seconds even if a test forgets to stop it.

Example::

    with FakeHub(tokens={"hf_test": "alice"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_test"}
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".parquet", ".arrow", ".mp4", ".webm", ".png", ".jpg", ".npz")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub's threshold for text files
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO = rf"(?P<repo_id>{_NAME}/{_NAME})"
_TYPE = r"(?P<type>models|datasets|spaces)"
_ROUTES: list[tuple[str, re.Pattern]] = [
    ("whoami", re.compile(r"^/api/whoami-v2$")),
    ("create_repo", re.compile(r"^/api/repos/create$")),
    ("delete_repo", re.compile(r"^/api/repos/delete$")),
    ("validate_yaml", re.compile(r"^/api/validate-yaml$")),
    ("xet_token", re.compile(rf"^/api/{_TYPE}/{_REPO}/xet-(?:read|write)-token(?:/.*)?$")),
    ("preupload", re.compile(rf"^/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)$")),
    ("commit", re.compile(rf"^/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)$")),
    ("tree", re.compile(rf"^/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")),
    ("info", re.compile(rf"^/api/{_TYPE}/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")),
    ("lfs_batch", re.compile(rf"^/(?:(?P<prefix>datasets|spaces)/)?{_REPO}\.git/info/lfs/objects/batch$")),
    ("lfs_upload", re.compile(r"^/_lfs/upload/(?P<oid>[0-9a-f]{64})$")),
    ("lfs_verify", re.compile(r"^/_lfs/verify$")),
    ("resolve", re.compile(rf"^/(?:(?P<prefix>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
]


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: regular files keep their bytes, LFS files point into the LFS store."""

    size: int
    blob_id: str  # git sha1 of the content (regular) or of the LFS pointer (lfs)
    content: bytes | None = None
    lfs_oid: str | None = None  # sha256 of the content


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)


class HubError(Exception):
    """An HTTP error answered with the Hub's error headers."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit
        self.body = body or {}


FAULTS = ("refuse", "drop", "drop-after-apply", "500", "500-after-apply")


@dataclass
class Fault:
    """Fails the ``nth`` .. ``nth + times - 1`` requests that match ``method`` and the ``path`` pattern."""

    kind: str
    nth: int = 1
    times: int = 1
    method: str | None = None
    path: str | None = None
    seen: int = 0
    fired: int = 0

    def take(self, method: str, path: str) -> bool:
        if (self.method and method != self.method) or (self.path and not re.search(self.path, path)):
            return False
        self.seen += 1
        if self.seen >= self.nth and self.fired < self.times:
            self.fired += 1
            return True
        return False


class FakeHub:
    """The server state plus its thread. Use as a context manager (``with FakeHub(...) as hub``).

    Args:
        tokens: access token -> user name.
        orgs: user name -> organisations the user may write to.
        max_body_bytes: largest accepted request body.
        lifetime_s: the server stops itself after this many seconds.
    """

    def __init__(
        self,
        tokens: dict[str, str],
        orgs: dict[str, list[str]] | None = None,
        max_body_bytes: int = 256 * 1024 * 1024,
        lifetime_s: float = 600.0,
    ) -> None:
        self.tokens = dict(tokens)
        self.orgs = {user: list(names) for user, names in (orgs or {}).items()}
        self.max_body_bytes = max_body_bytes
        self.lifetime_s = lifetime_s
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status; 0 = no answer), for assertions
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._commit_counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not running: call start() or use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if self._timer is not None:
            self._timer.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests
    def file_paths(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        repo = self._repo(repo_type, repo_id, user=None, owner_view=True)
        return sorted(self._commit_files(repo, revision))

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        """Number of commits, the initial ``.gitattributes`` commit included."""
        return len(self._repo(repo_type, repo_id, user=None, owner_view=True).commits)

    def inject(self, kind: str, *, nth: int = 1, times: int = 1, method: str | None = None,
               path: str | None = None) -> Fault:
        """Makes the ``nth`` request matching ``method`` / ``path`` (a regex searched in the URL path) and the
        ``times - 1`` matching requests after it fail with ``kind`` (one of :data:`FAULTS`)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; choose one of {FAULTS}")
        fault = Fault(kind, nth=nth, times=times, method=method, path=path)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.take(method, path):
                    return fault.kind
        return None

    # ------------------------------------------------------------------ state logic
    def user_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        return self.tokens.get(authorization.split(" ", 1)[1].strip())

    def require_user(self, authorization: str | None) -> str:
        if not authorization:
            raise HubError(401, "You must be authenticated (no token given)")
        user = self.user_for(authorization)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def require_write(self, user: str, namespace: str, what: str) -> None:
        if namespace != user and namespace not in self.orgs.get(user, []):
            raise HubError(403, f"You don't have the rights to {what} under the namespace \"{namespace}\"")

    def _new_commit_id(self, payload: bytes) -> str:
        self._commit_counter += 1
        return hashlib.sha1(b"%d:" % self._commit_counter + payload).hexdigest()

    def _repo(self, repo_type: str, repo_id: str, user: str | None, owner_view: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        namespace = repo_id.split("/")[0]
        visible = repo is not None and (
            owner_view or not repo.private or (user is not None and (user == namespace or namespace in self.orgs.get(user, [])))
        )
        if not visible:
            raise HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        return repo

    def _resolve_revision(self, repo: Repo, revision: str) -> str:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _commit_files(self, repo: Repo, revision: str) -> dict[str, StoredFile]:
        return repo.commits[self._resolve_revision(repo, revision)]

    def create_repo(self, user: str, payload: dict) -> dict:
        name, organization = payload.get("name"), payload.get("organization")
        namespace = organization or user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        if not name or not re.fullmatch(_NAME, name):
            raise HubError(400, f"Invalid repo name {name!r}")
        self.require_write(user, namespace, f"create a {repo_type}")
        repo_id = f"{namespace}/{name}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:  # the Hub's answer: 409 with the existing repo's url
                url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}"
                raise HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private)
            first = self._new_commit_id(repo_id.encode())
            repo.commits[first] = {".gitattributes": _regular(GITATTRIBUTES)}
            repo.branches["main"] = first
            self.repos[(repo_type, repo_id)] = repo
        return {"url": f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}", "name": repo_id, "id": repo_id}

    def delete_repo(self, user: str, payload: dict) -> None:
        name, organization = payload.get("name"), payload.get("organization")
        namespace = organization or user
        repo_type = payload.get("type") or "model"
        self.require_write(user, namespace, f"delete a {repo_type}")
        with self._lock:
            if self.repos.pop((repo_type, f"{namespace}/{name}"), None) is None:
                raise HubError(404, f"Repository {namespace}/{name} not found", code="RepoNotFound")

    def preupload(self, repo: Repo, revision: str, payload: dict) -> dict:
        files = self._commit_files(repo, revision)
        answer = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE
            existing = files.get(path)
            remote_oid = None
            if existing is not None:
                remote_oid = existing.lfs_oid if existing.lfs_oid else existing.blob_id
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote_oid})
        return {"files": answer, "commitOid": self._resolve_revision(repo, revision)}

    def lfs_batch(self, payload: dict) -> dict:
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry: dict = {"oid": oid, "size": size}
            if size > self.max_body_bytes:
                entry["error"] = {"code": 422, "message": f"object too large for this test server ({size} bytes)"}
            elif oid not in self.lfs_store:
                entry["authenticated"] = True
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/_lfs/upload/{oid}"},
                    "verify": {"href": f"{self.url}/_lfs/verify"},
                }
            objects.append(entry)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_put(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256 oid")
        with self._lock:
            self.lfs_store[oid] = data

    def commit(self, user: str, repo: Repo, revision: str, body: bytes) -> dict:
        self.require_write(user, repo.repo_id.split("/")[0], "push")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        if not header.get("summary"):
            raise HubError(400, "commit summary is empty")
        with self._lock:  # the whole commit is applied at once, or not at all
            parent = self._resolve_revision(repo, revision)
            expected_parent = header.get("parentCommit")
            if expected_parent and not parent.startswith(expected_parent):
                raise HubError(412, f"parent commit {expected_parent} is not the head of {revision}")
            files = dict(repo.commits[parent])
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise HubError(400, f"invalid path {path!r}")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, "only base64 encoded files are supported")
                    files[path] = _regular(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in self.lfs_store:
                        raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
                    if len(self.lfs_store[oid]) != int(value["size"]):
                        raise HubError(422, f"LFS object {oid} for {path} has the wrong size")
                    files[path] = _lfs(oid, int(value["size"]))
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for name in [p for p in files if p.startswith(prefix)]:
                        del files[name]
                else:
                    raise HubError(400, f"unsupported commit operation {key!r}")
            commit_id = self._new_commit_id(body)
            repo.commits[commit_id] = files
            repo.branches[unquote(revision)] = commit_id
        return {
            "success": True,
            "commitOid": commit_id,
            "commitUrl": f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit_id}",
            "pullRequestUrl": None,
        }

    def info(self, repo: Repo, revision: str | None) -> dict:
        sha = self._resolve_revision(repo, revision or "main")
        files = repo.commits[sha]
        siblings = []
        for path, entry in sorted(files.items()):
            sibling: dict = {"rfilename": path, "size": entry.size, "blobId": entry.blob_id}
            if entry.lfs_oid:
                sibling["lfs"] = {"sha256": entry.lfs_oid, "size": entry.size, "pointerSize": 134}
            siblings.append(sibling)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.created_at))
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "createdAt": stamp,
            "lastModified": stamp,
        }

    def tree(self, repo: Repo, revision: str, path: str | None, recursive: bool) -> list[dict]:
        files = self._commit_files(repo, revision)
        prefix = (path.strip("/") + "/") if path else ""
        entries: dict[str, dict] = {}
        for name, entry in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folder = prefix + rest.split("/")[0]
                entries[folder] = {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder}
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folder = prefix + "/".join(parts[:depth])
                    entries[folder] = {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder}
            item: dict = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": name}
            if entry.lfs_oid:
                item["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": 134}
            entries[name] = item
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist", code="EntryNotFound")
        return list(entries.values())

    def resolve(self, repo: Repo, revision: str, path: str) -> tuple[str, StoredFile, bytes]:
        sha = self._resolve_revision(repo, revision)
        entry = repo.commits[sha].get(unquote(path))
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", commit=sha)
        data = entry.content if entry.content is not None else self.lfs_store[entry.lfs_oid]
        return sha, entry, data


def _regular(data: bytes) -> StoredFile:
    return StoredFile(size=len(data), blob_id=git_blob_sha1(data), content=data)


def _lfs(oid: str, size: int) -> StoredFile:
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()
    return StoredFile(size=size, blob_id=git_blob_sha1(pointer), lfs_oid=oid)


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def log_message(self, format, *args):  # noqa: A002  (keep test output quiet)
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.state.max_body_bytes:
            raise HubError(413, f"request body too large ({length} bytes)")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > self.state.max_body_bytes:
                    raise HubError(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        try:
            return json.loads(self._body() or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"invalid JSON body: {err}") from err

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "GET") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, obj, status: int = 200, method: str = "GET") -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"}, method)

    def _send_500(self, method: str) -> None:
        message = "Internal Error (injected)"
        self._send(500, json.dumps({"error": message}).encode(), {"X-Error-Message": message}, method)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        fault = self.state._take_fault(method, split.path)
        if fault in ("refuse", "drop", "500"):  # nothing is applied
            if fault == "refuse":  # a reset (RST) instead of an orderly close, before anything is read
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self._body()
            if fault == "500":
                self._send_500(method)
            self.close_connection = True
            with self.state._lock:
                self.state.requests.append((method, split.path, 500 if fault == "500" else 0))
            return
        if fault in ("drop-after-apply", "500-after-apply"):
            real, self.wfile = self.wfile, io.BytesIO()  # apply the request, throw its answer away
            try:
                self._handle(method, split)
            finally:
                self.wfile = real
            if fault == "500-after-apply":
                self._send_500(method)
            self.close_connection = True
            return
        self._handle(method, split)

    def _handle(self, method: str, split) -> None:
        status = 500
        try:
            for name, pattern in _ROUTES:
                match = pattern.match(split.path)
                if match:
                    status = getattr(self, f"_route_{name}")(method, match, parse_qs(split.query)) or 200
                    break
            else:
                raise HubError(404, f"FakeHub does not implement {method} {split.path}")
        except HubError as err:
            status = err.status
            headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.commit:
                headers["X-Repo-Commit"] = err.commit
            self._send(err.status, json.dumps({"error": err.message, **err.body}).encode(), headers, method)
        except Exception as err:  # a bug in the fake: report it to the client as a 500
            self._send(500, json.dumps({"error": f"FakeHub internal error: {err!r}"}).encode(), {}, method)
        finally:
            with self.state._lock:
                self.state.requests.append((method, split.path, status))

    def _repo_from(self, match: re.Match, owner_view: bool = False) -> Repo:
        groups = match.groupdict()
        if "type" in groups and groups.get("type"):
            repo_type = REPO_TYPES[groups["type"]]
        else:
            repo_type = REPO_TYPES.get(groups.get("prefix") or "models", "model")
        user = self.state.user_for(self.headers.get("Authorization"))
        return self.state._repo(repo_type, groups["repo_id"], user, owner_view=owner_view)

    # ------------------------------------------------------------------ routes
    def _route_whoami(self, method, match, query):
        user = self.state.require_user(self.headers.get("Authorization"))
        orgs = [{"name": org, "type": "org"} for org in self.state.orgs.get(user, [])]
        self._send_json(
            {"type": "user", "id": user, "name": user, "fullname": user, "orgs": orgs,
             "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}},
            method=method,
        )

    def _route_create_repo(self, method, match, query):
        user = self.state.require_user(self.headers.get("Authorization"))
        self._send_json(self.state.create_repo(user, self._json_body()), method=method)

    def _route_delete_repo(self, method, match, query):
        if method != "DELETE":
            raise HubError(405, "use DELETE")
        user = self.state.require_user(self.headers.get("Authorization"))
        self.state.delete_repo(user, self._json_body())
        self._send_json({}, method=method)

    def _route_validate_yaml(self, method, match, query):
        payload = self._json_body()
        content = payload.get("content", "")
        errors = []
        if content.startswith("---"):
            end = content.find("\n---", 3)
            if end < 0:
                errors.append({"message": "metadata block is not closed"})
            else:
                import yaml

                try:
                    meta = yaml.safe_load(content[3:end])
                    if meta is not None and not isinstance(meta, dict):
                        errors.append({"message": "metadata must be a mapping"})
                except yaml.YAMLError as err:
                    errors.append({"message": f"invalid YAML: {err}"})
        self._send_json({"errors": errors, "warnings": []}, status=400 if errors else 200, method=method)

    def _route_xet_token(self, method, match, query):
        raise HubError(501, "This test Hub stores files with plain LFS only: set HF_HUB_DISABLE_XET=1")

    def _route_preupload(self, method, match, query):
        user = self.state.require_user(self.headers.get("Authorization"))
        repo = self._repo_from(match)
        self.state.require_write(user, repo.repo_id.split("/")[0], "push")
        self._send_json(self.state.preupload(repo, match["rev"], self._json_body()), method=method)

    def _route_commit(self, method, match, query):
        user = self.state.require_user(self.headers.get("Authorization"))
        repo = self._repo_from(match)
        self._send_json(self.state.commit(user, repo, match["rev"], self._body()), method=method)

    def _route_lfs_batch(self, method, match, query):
        user = self.state.require_user(self.headers.get("Authorization"))
        repo = self._repo_from(match)
        self.state.require_write(user, repo.repo_id.split("/")[0], "push")
        self._send(200, json.dumps(self.state.lfs_batch(self._json_body())).encode(),
                   {"Content-Type": "application/vnd.git-lfs+json"}, method)

    def _route_lfs_upload(self, method, match, query):
        if method != "PUT":
            raise HubError(405, "use PUT")
        self.state.lfs_put(match["oid"], self._body())
        self._send(200, b"", {}, method)

    def _route_lfs_verify(self, method, match, query):
        payload = self._json_body()
        if payload.get("oid") not in self.state.lfs_store:
            raise HubError(404, "LFS object not found")
        self._send_json({"success": True}, method=method)

    def _route_info(self, method, match, query):
        repo = self._repo_from(match)
        self._send_json(self.state.info(repo, match["rev"]), method=method)

    def _route_tree(self, method, match, query):
        repo = self._repo_from(match)
        recursive = query.get("recursive", ["false"])[0].lower() in {"1", "true"}
        self._send_json(self.state.tree(repo, match["rev"], match["path"], recursive), method=method)

    def _route_resolve(self, method, match, query):
        if method not in {"GET", "HEAD"}:
            raise HubError(405, "use GET or HEAD")
        repo = self._repo_from(match)
        sha, entry, data = self.state.resolve(repo, match["rev"], match["path"])
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if entry.lfs_oid:
            headers["ETag"] = f'"{entry.lfs_oid}"'
            headers["X-Linked-Etag"] = f'"{entry.lfs_oid}"'
            headers["X-Linked-Size"] = str(entry.size)
        else:
            headers["ETag"] = f'"{entry.blob_id}"'
        status = 200
        range_header = self.headers.get("Range")
        if range_header and method == "GET":
            found = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if found:
                start = int(found[1])
                end = int(found[2]) if found[2] else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start:end + 1], 206
        self._send(status, data, headers, method)
        return status
