"""The loopback Hub is strict where the real one is, so a passing round trip means the client did the right thing."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request

import pytest

from tests.helpers.hub_server import HubServer

TOKEN = "hf_server_test_token"


def call(hub, method, path, payload=None, token=TOKEN, data=None, headers=None):
    body = data if data is not None else (json.dumps(payload).encode() if payload is not None else None)
    request = urllib.request.Request(hub.url + path, data=body, method=method, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        assert call(server, "POST", "/api/repos/create", {"name": "m", "organization": "org"})[0] == 200
        yield server


def ndjson(*items):
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def test_writes_need_the_token(hub):
    status, headers, _ = call(hub, "POST", "/api/repos/create", {"name": "other", "organization": "org"},
                              token="hf_wrong")
    assert status == 401 and ("model", "org/other") not in hub.repos
    header = {"key": "header", "value": {"summary": "x"}}
    status, _, _ = call(hub, "POST", "/api/models/org/m/commit/main", data=ndjson(header), token=None)
    assert status == 401 and hub.commit_count("org/m") == 1


def test_commit_then_resolve_with_range(hub):
    content = b"hello hub"
    lines = ndjson({"key": "header", "value": {"summary": "add"}},
                   {"key": "file", "value": {"path": "a/b.txt", "content": base64.b64encode(content).decode(),
                                             "encoding": "base64"}})
    status, _, body = call(hub, "POST", "/api/models/org/m/commit/main", data=lines,
                           headers={"Content-Type": "application/x-ndjson"})
    oid = json.loads(body)["commitOid"]
    assert status == 200 and hub.files("org/m")["a/b.txt"] == content
    status, headers, body = call(hub, "HEAD", "/org/m/resolve/main/a/b.txt")
    assert status == 200 and headers["X-Repo-Commit"] == oid and int(headers["Content-Length"]) == len(content)
    status, _, body = call(hub, "GET", "/org/m/resolve/main/a/b.txt", headers={"Range": "bytes=6-"})
    assert status == 206 and body == b"hub"
    assert call(hub, "GET", "/org/m/resolve/main/missing.txt")[1]["X-Error-Code"] == "EntryNotFound"
    assert call(hub, "GET", "/org/m/resolve/nobranch/a/b.txt")[1]["X-Error-Code"] == "RevisionNotFound"


def test_lfs_content_is_verified(hub):
    data = b"\x00" * 1000
    oid = hashlib.sha256(data).hexdigest()
    status, _, body = call(hub, "POST", "/org/m.git/info/lfs/objects/batch",
                           {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]})
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    path = href[len(hub.url):]
    assert call(hub, "PUT", path, data=b"\x01" * 1000, token=None)[0] == 400  # wrong content for that oid
    header = {"key": "header", "value": {"summary": "weights"}}
    lfs = {"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256", "oid": oid, "size": len(data)}}
    assert call(hub, "POST", "/api/models/org/m/commit/main", data=ndjson(header, lfs))[0] == 422  # never uploaded
    assert call(hub, "PUT", path, data=data, token=None)[0] == 200
    assert call(hub, "POST", "/api/models/org/m/commit/main", data=ndjson(header, lfs))[0] == 200
    tree = json.loads(call(hub, "GET", "/api/models/org/m/tree/main?recursive=true")[2])
    entry = next(e for e in tree if e["path"] == "model.safetensors")
    assert entry["lfs"] == {"oid": oid, "size": len(data), "pointerSize": entry["lfs"]["pointerSize"]}


def test_stale_parent_commit_is_refused(hub):
    head = hub.repos[("model", "org/m")].branches["main"]
    header = {"key": "header", "value": {"summary": "x", "parentCommit": "0" * 40}}
    assert call(hub, "POST", "/api/models/org/m/commit/main", data=ndjson(header))[0] == 412
    assert hub.repos[("model", "org/m")].branches["main"] == head


def test_validate_yaml(hub):
    ok = call(hub, "POST", "/api/validate-yaml", {"content": "---\nlicense: mit\n---\n# x\n", "repoType": "model"})
    bad = call(hub, "POST", "/api/validate-yaml", {"content": "---\nlicense: [mit\n---\n# x\n", "repoType": "model"})
    assert ok[0] == 200 and bad[0] == 400 and json.loads(bad[2])["errors"]
