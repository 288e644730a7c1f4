"""modelops-fetch against local files, a local HTTP server, and a local S3 stand-in."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelops_serving.digests import file_digest, path_digest, tree_digest
from modelops_serving.fetch import DigestMismatch, FetchError, fetch

ACCESS, SECRET, REGION = "AKIDTEST", "secret/for+tests", "eu-west-3"
OBJECTS = {"/models/fraud/model.skops": b"pretend model bytes " * 1000}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def expected_signature(method: str, path: str, headers: dict[str, str], signed: str) -> str:
    """An independent SigV4 check, written from the specification, for the stand-in server."""
    names = signed.split(";")
    canonical = "\n".join([method, path, "",
                           "".join(f"{n}:{headers[n].strip()}\n" for n in names), signed,
                           headers["x-amz-content-sha256"]])
    amz_date = headers["x-amz-date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n" + hashlib.sha256(
        canonical.encode()).hexdigest()
    key = ("AWS4" + SECRET).encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class StandInS3(BaseHTTPRequestHandler):
    """Path-style GET of objects under /bucket/key, only with a valid signature."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        auth = headers.get("authorization", "")
        fields = dict(part.strip().split("=", 1) for part in
                      auth.removeprefix("AWS4-HMAC-SHA256 ").split(",") if "=" in part)
        ok = (fields.get("Credential", "").startswith(ACCESS + "/")
              and fields.get("Signature") == expected_signature(
                  "GET", self.path, headers, fields.get("SignedHeaders", "")))
        body = OBJECTS.get(self.path.removeprefix("/bucket"))
        if not ok:
            self.send_response(403)
            payload = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
        elif body is None:
            self.send_response(404)
            payload = b"<Error><Code>NoSuchKey</Code></Error>"
        else:
            self.send_response(200)
            payload = body
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", REGION)
    yield endpoint
    server.shutdown()
    server.server_close()


def test_s3_fetch_is_signed_and_verified(s3_endpoint: str, tmp_path: Path) -> None:
    data = OBJECTS["/models/fraud/model.skops"]
    path = fetch("s3://bucket/models/fraud/model.skops", tmp_path, digest_of(data))
    assert path == tmp_path / "model.skops" and path.read_bytes() == data


def test_s3_wrong_secret_is_refused(s3_endpoint: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(FetchError, match="answered 403"):
        fetch("s3://bucket/models/fraud/model.skops", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_http_fetch_and_digest_mismatch_leaves_nothing(s3_endpoint: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = OBJECTS["/models/fraud/model.skops"]
    target = tmp_path / "out.bin"
    with pytest.raises(DigestMismatch, match="expected sha256:0000"):
        fetch("s3://bucket/models/fraud/model.skops", target, "sha256:" + "0" * 64)
    assert list(tmp_path.iterdir()) == []
    # Plain http(s) with no credentials: the stand-in refuses unsigned requests with 403.
    with pytest.raises(FetchError, match="403"):
        fetch(f"{s3_endpoint}/bucket/models/fraud/model.skops", target, digest_of(data))


def test_file_fetch_via_the_cli(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx bytes")
    dest = tmp_path / "dest"
    dest.mkdir()
    ok = subprocess.run([sys.executable, "-m", "modelops_serving.fetch", f"file://{source}",
                         str(dest), "--digest", digest_of(b"onnx bytes")],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert (dest / "model.onnx").read_bytes() == b"onnx bytes"
    bad = subprocess.run([sys.executable, "-m", "modelops_serving.fetch", str(source),
                          str(tmp_path / "copy.onnx"), "--digest", digest_of(b"other")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "digest mismatch" in bad.stderr and "refusing" in bad.stderr
    assert not (tmp_path / "copy.onnx").exists()
    malformed = subprocess.run([sys.executable, "-m", "modelops_serving.fetch", str(source),
                                str(tmp_path / "x"), "--digest", "md5:abc"],
                               capture_output=True, text=True, timeout=60)
    assert malformed.returncode != 0 and "expected 'sha256:' followed by 64" in malformed.stderr


def test_unsupported_scheme_is_named(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="scheme 'gs' is not supported"):
        fetch("gs://bucket/model", tmp_path)


# --- tree digests -------------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    """A model directory whose names sort differently by bytes than by a locale."""
    files = {"MLmodel": b"flavors: {}\n", "a b/é.txt": b"accent", "B/upper": b"upper",
             "_x": b"", ".hidden": b"dot", "data/model.pkl": b"\x00\x01" * 5000,
             "data/sub/deep.bin": b"deep"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "empty-dir").mkdir()
    return root


def shell_tree_digest(root: Path) -> str:
    pipeline = ("find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum "
                "| sha256sum")
    out = subprocess.run(["bash", "-c", pipeline], cwd=root, capture_output=True, text=True,
                         check=True, timeout=60)
    return "sha256:" + out.stdout.split()[0]


def test_tree_digest_is_the_shell_pipelines(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "model")
    assert tree_digest(root) == shell_tree_digest(root) == path_digest(root)
    single = root / "data/model.pkl"
    assert file_digest(single) == path_digest(single) == digest_of(single.read_bytes())
    # Directories are not part of it: an empty one more changes nothing.
    (root / "data/another-empty").mkdir()
    assert tree_digest(root) == shell_tree_digest(root)


def test_tree_digest_refuses_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "model")
    (root / "link").symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match=r"link in .* is a symlink"):
        tree_digest(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no files"):
        tree_digest(empty)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "back\\slash").write_bytes(b"x")
    with pytest.raises(ValueError, match="backslash"):
        tree_digest(odd)
