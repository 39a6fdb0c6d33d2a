"""A loopback stand-in for the Hugging Face Hub HTTP API, for tests that drive the real ``huggingface_hub`` client.

It implements only what the client calls to push and pull a folder (checked against huggingface_hub 1.31 to 2.4 with
Xet disabled): repo creation, branch creation, ``validate-yaml``, ``preupload``, the LFS batch API with single-part
``PUT`` uploads and ``verify``, the NDJSON ``commit`` endpoint, repo info at a revision, tree listing, and file
``resolve`` (``HEAD`` with ``X-Repo-Commit`` / ``ETag`` / ``Content-Length``, ``GET`` with ``Range``). State lives in
memory; git objects are imitated with content hashes, not real git.

    with HubServer(token="hf_fake") as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_fake", "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
        # run client steps in a subprocess with `env`: HF_ENDPOINT is read when huggingface_hub is imported.

Writes need ``Authorization: Bearer <token>``; private repos need it for reads too (401 ``RepoNotFound`` like the
Hub). ``hub.requests`` records ``(method, path, authorized)`` for each request, never header values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["HubServer"]

# The Hub stores these as LFS through its default .gitattributes, and anything above 10 MB regardless of name.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".parquet", ".arrow", ".h5", ".msgpack", ".zip")
LFS_MIN_SIZE = 10 * 1024 * 1024
DEFAULT_GITATTRIBUTES = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
REPO_RE = r"(?P<repo>[\w.\-]+/[\w.\-]+)"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    size: int
    sha256: str
    git_oid: str  # git blob id: of the content for regular files, of the LFS pointer for LFS files
    lfs: bool
    pointer_size: int = 0


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)  # commit oid -> tree
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    messages: dict[str, str] = field(default_factory=dict)  # commit oid -> summary


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """Threaded HTTP server on 127.0.0.1, port chosen by the OS. Use as a context manager or call start()/stop()."""

    def __init__(self, token: str | None = None, user: str = "tester"):
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (LFS objects and regular files alike)
        self.requests: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "HubServer is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- inspection helpers for tests -----------------------------------------------------------------------------
    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        tree = repo.commits[self._resolve_rev(repo, revision)]
        return {path: self.blobs[f.sha256] for path, f in tree.items()}

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        return len(self.repos[(repo_type, repo_id)].commits)

    # -- state ----------------------------------------------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str, authorized: bool, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubError(401 if not authorized else 404, f"Repository {repo_id} not found", "RepoNotFound")
        if write and not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        return repo

    @staticmethod
    def _resolve_rev(repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(self, repo: Repo, tree: dict[str, StoredFile], message: str) -> str:
        seed = f"{repo.repo_id}{len(repo.commits)}{message}{time.time_ns()}"
        oid = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[oid], repo.messages[oid] = tree, message
        return oid

    def _store(self, data: bytes, lfs: bool) -> StoredFile:
        sha256 = hashlib.sha256(data).hexdigest()
        self.blobs[sha256] = data
        if not lfs:
            return StoredFile(len(data), sha256, git_blob_sha1(data), False)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
        return StoredFile(len(data), sha256, git_blob_sha1(pointer), True, len(pointer))

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = Repo(repo_type, repo_id, private)
            # Like the Hub, a new repo starts with one commit holding the default .gitattributes.
            tree = {".gitattributes": self._store(DEFAULT_GITATTRIBUTES, lfs=False)}
            repo.branches["main"] = self._new_commit(repo, tree, "initial commit")
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def commit(self, repo: Repo, revision: str, lines: list[dict]) -> str:
        header = next((item["value"] for item in lines if item.get("key") == "header"), None)
        if header is None or not header.get("summary"):
            raise HubError(400, "The commit payload needs a header line with a non-empty summary")
        with self.lock:
            if revision not in repo.branches:
                raise HubError(404, f"Branch {revision} does not exist; create it first", "RevisionNotFound")
            head = repo.branches[revision]
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, f"parentCommit {header['parentCommit']} is not the head of {revision} ({head})")
            tree = dict(repo.commits[head])
            for item in lines:
                key, value = item.get("key"), item.get("value", {})
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                    tree[path] = self._store(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = self.blobs.get(value["oid"])
                    if data is None:
                        raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                    tree[path] = self._store(data, lfs=True)
                elif key == "deletedFile":
                    if tree.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for p in [p for p in tree if p.startswith(prefix)]:
                        del tree[p]
                elif key != "header":
                    raise HubError(400, f"Unknown commit operation {key!r}")
            oid = self._new_commit(repo, tree, header["summary"])
            repo.branches[revision] = oid
            return oid


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # keep pytest output clean; requests are in hub.requests
        pass

    # -- plumbing -------------------------------------------------------------------------------------------------
    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return self.hub.token is None or auth == f"Bearer {self.hub.token}"

    def _body(self) -> bytes:
        return self._raw

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self) -> dict:
        body = self._body()
        return json.loads(body) if body else {}

    def _send(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
        if body is None:
            body = json.dumps(payload if payload is not None else {}).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        authorized = self._authorized()
        self.hub.requests.append((self.command, path, authorized))
        # Read the whole body first: an error answered before reading it would leave its bytes on the kept-alive
        # connection, to be parsed as the next request.
        self._raw = self._read_body() if self.command in ("POST", "PUT") else b""
        try:
            for method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if method == self.command and match:
                    return handler(self, authorized, query, **match.groupdict())
            raise HubError(404, f"No route for {self.command} {path}")
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, {"error": err.message}, headers)

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # -- API ------------------------------------------------------------------------------------------------------
    def whoami(self, authorized, query):
        if not authorized:
            raise HubError(401, "Invalid credentials in Authorization header")
        self._send(200, {"type": "user", "name": self.hub.user, "orgs": [], "auth": {"type": "access_token"}})

    def create_repo(self, authorized, query):
        if not authorized:
            raise HubError(401, "You must be authenticated to create a repo")
        payload = self._json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        url = f"{self.hub.url}/{TYPE_PREFIX[repo_type]}{repo_id}"
        try:
            self.hub.create_repo(repo_type, repo_id, private)
        except HubError as err:
            self._send(err.status, {"error": err.message, "url": url}, {"X-Error-Message": err.message})
            return
        self._send(200, {"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})

    def validate_yaml(self, authorized, query):
        content = self._json().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
            if metadata is not None and not isinstance(metadata, dict):
                raise ValueError("the metadata block must be a YAML mapping")
        except (yaml.YAMLError, ValueError) as err:
            self._send(400, {"errors": [{"message": f"Invalid YAML metadata: {err}"}], "warnings": []})
            return
        warnings = [] if metadata else [{"message": "empty or missing yaml metadata in repo card"}]
        self._send(200, {"errors": [], "warnings": warnings})

    def repo_info(self, authorized, query, rtype, repo, rev="main"):
        r = self.hub._repo(rtype[:-1], repo, authorized)
        oid = self.hub._resolve_rev(r, unquote(rev))
        tree = r.commits[oid]
        self._send(200, {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "private": r.private, "sha": oid,
            "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
            "siblings": [{"rfilename": p, **({"size": f.size} if "blobs" in query else {})} for p in sorted(tree)],
        })

    def create_branch(self, authorized, query, rtype, repo, branch):
        r = self.hub._repo(rtype[:-1], repo, authorized, write=True)
        branch = unquote(branch)
        start = self._json().get("startingPoint") or "main"
        with self.hub.lock:
            if branch in r.branches:
                raise HubError(409, f"Reference refs/heads/{branch} already exists")
            r.branches[branch] = self.hub._resolve_rev(r, start)
        self._send(200, {})

    def list_refs(self, authorized, query, rtype, repo):
        r = self.hub._repo(rtype[:-1], repo, authorized)
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in r.branches.items()]
        self._send(200, {"branches": branches, "tags": [], "converts": []})

    def preupload(self, authorized, query, rtype, repo, rev):
        r = self.hub._repo(rtype[:-1], repo, authorized, write=True)
        tree = r.commits[self.hub._resolve_rev(r, unquote(rev))] if unquote(rev) in r.branches else {}
        files = []
        for item in self._json().get("files", []):
            lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
            existing = tree.get(item["path"])
            # The client compares this with its local oid (sha256 for LFS, git sha1 otherwise) to skip unchanged files.
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid)
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self._send(200, {"files": files, "commitOid": r.branches.get(unquote(rev))})

    def lfs_batch(self, authorized, query, prefix, repo):
        rtype = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix or ""]
        self.hub._repo(rtype, repo, authorized, write=True)
        payload = self._json()
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the LFS upload operation is implemented")
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.blobs:
                href = f"{self.hub.url}/_lfs/{obj['oid']}?size={obj['size']}"
                entry["actions"] = {"upload": {"href": href, "header": {}},
                                    "verify": {"href": f"{self.hub.url}/_lfs_verify", "header": {}}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects},
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, authorized, query, oid):
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid or len(data) != int(query.get("size", ["-1"])[0]):
            raise HubError(400, f"Uploaded content does not match oid {oid} and its size")
        with self.hub.lock:
            self.hub.blobs[oid] = data
        self._send(200, body=b"", headers={"ETag": f'"{oid}"'})

    def lfs_verify(self, authorized, query):
        payload = self._json()
        if len(self.hub.blobs.get(payload.get("oid"), b"")) != payload.get("size") or not payload.get("size"):
            raise HubError(404, f"LFS object {payload.get('oid')} not found")
        self._send(200, {})

    def commit(self, authorized, query, rtype, repo, rev):
        r = self.hub._repo(rtype[:-1], repo, authorized, write=True)
        if query.get("create_pr"):
            raise HubError(400, "Pull requests are not implemented by this test server")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        oid = self.hub.commit(r, unquote(rev), lines)
        url = f"{self.hub.url}/{TYPE_PREFIX[r.repo_type]}{repo}/commit/{oid}"
        self._send(200, {"success": True, "commitOid": oid, "commitUrl": url, "hookOutput": "",
                         "pullRequestUrl": None})

    def tree(self, authorized, query, rtype, repo, rev, path=None):
        r = self.hub._repo(rtype[:-1], repo, authorized)
        files = r.commits[self.hub._resolve_rev(r, unquote(rev))]
        prefix = unquote(path).strip("/") + "/" if path else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):].split("/")
            for depth in range(1, len(rest)):  # the folders between prefix and the file
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(rest[:depth]))
            if len(rest) > 1 and not recursive:
                continue
            f = files[p]
            entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": p}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            entries.append(entry)
        folder_entries = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                          for d in sorted(folders)]
        if prefix and not entries and not folder_entries:
            raise HubError(404, f"{prefix} not found at {rev}", "EntryNotFound")
        self._send(200, folder_entries + entries)

    def resolve(self, authorized, query, prefix, repo, rev, path):
        rtype = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix or ""]
        r = self.hub._repo(rtype, repo, authorized)
        oid = self.hub._resolve_rev(r, unquote(rev))
        f = r.commits[oid].get(unquote(path))
        if f is None:
            raise HubError(404, f"Entry not found: {unquote(path)}", "EntryNotFound")
        data = self.hub.blobs[f.sha256]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{f.sha256 if f.lfs else f.git_oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        status, range_header = 200, self.headers.get("Range", "")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
        if match and self.command == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self._send(status, body=data, headers=headers)


_T = r"(?P<rtype>models|datasets|spaces)"
_P = r"(?P<prefix>datasets/|spaces/)?"
ROUTES = [
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("GET", rf"/api/{_T}/{REPO_RE}", _Handler.repo_info),
    ("GET", rf"/api/{_T}/{REPO_RE}/revision/(?P<rev>[^/]+)", _Handler.repo_info),
    ("GET", rf"/api/{_T}/{REPO_RE}/refs", _Handler.list_refs),
    ("POST", rf"/api/{_T}/{REPO_RE}/branch/(?P<branch>[^/]+)", _Handler.create_branch),
    ("POST", rf"/api/{_T}/{REPO_RE}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    ("POST", rf"/api/{_T}/{REPO_RE}/commit/(?P<rev>[^/]+)", _Handler.commit),
    ("GET", rf"/api/{_T}/{REPO_RE}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", _Handler.tree),
    ("POST", rf"/{_P}{REPO_RE}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", _Handler.lfs_put),
    ("POST", r"/_lfs_verify", _Handler.lfs_verify),
    ("HEAD", rf"/{_P}{REPO_RE}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve),
    ("GET", rf"/{_P}{REPO_RE}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve),
]

