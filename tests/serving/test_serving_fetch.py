"""modelops-fetch against local files and archives, and stand-ins of S3, STS, EKS Pod Identity,
GCS and the GCE metadata server on a local HTTP server (``cloud_standins``)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cloud_standins import (
    ACCESS,
    CONTAINER_TOKEN,
    GCS_TOKEN,
    POD,
    REGION,
    ROLE,
    SECRET,
    SESSION,
    WEB_TOKEN,
    Cloud,
    Request,
    running_cloud,
)
from serving_helpers import Models, Program, model_server

from modelops_serving.digests import file_digest, path_digest, tree_digest
from modelops_serving.fetch import (
    DigestMismatch,
    FetchError,
    artefact_digest,
    fetch,
    fetch_verified,
    main,
    parse_source,
    resolve_local,
)
from modelops_serving.trees import TreeWriter

MODEL = b"pretend model bytes " * 1000
CLOUD_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS", "AWS_REGION", "AWS_DEFAULT_REGION", "STORAGE_EMULATOR_HOST",
    "GCE_METADATA_HOST", "MODELOPS_DIGEST", "MODELOPS_TIMEOUT", "MODELOPS_MAX_BYTES",
    "MODELOPS_MAX_FILES", "MODELOPS_MAX_SECONDS", "MODELOPS_TERMINATION_LOG",
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def no_cloud_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLOUD_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    # Nothing listens there: no test waits for the real metadata server's address to time out.
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{closed_port()}")


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with running_cloud() as cloud:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", cloud.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", cloud.url + "/sts/")
        monkeypatch.setenv("AWS_REGION", REGION)
        # Host and port only, as fake-gcs-server users often write it.
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", cloud.url.removeprefix("http://"))
        yield cloud


def static_keys(monkeypatch: pytest.MonkeyPatch, secret: str = SECRET) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)


def web_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str = WEB_TOKEN) -> None:
    token_file = tmp_path / "eks.amazonaws.com-serviceaccount-token"
    token_file.write_text(token + "\n")
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))


def pod_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cloud: Cloud) -> None:
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text(CONTAINER_TOKEN)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cloud.url + "/pod-identity")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))


def s3_requests(cloud: Cloud) -> list[dict[str, str]]:
    return [r.headers for r in cloud.seen("/models")]


def contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def put_tree(store: dict[str, bytes], prefix: str, root: Path) -> None:
    for name, data in contents(root).items():
        store[prefix + name] = data


def tar_of(root: Path, mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        archive.add(root, arcname=".")  # members ./, ./MLmodel, … as `tar -C root -czf … .`
    return buffer.getvalue()


def zip_of(root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x",
           target: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_with(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def zip_with(*members: tuple[str, bytes, int]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name", on purpose
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr, info.compress_type = mode << 16, zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


# --- single files: file://, http(s)://, s3:// --------------------------------------------------


def test_s3_fetch_is_signed_and_verified(cloud: Cloud, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    static_keys(monkeypatch)
    cloud.s3["models/fraud/model v2.skops"] = MODEL
    path = fetch("s3://models/fraud/model%20v2.skops", tmp_path, digest_of(MODEL))
    assert path == tmp_path / "model v2.skops" and path.read_bytes() == MODEL
    assert all(h["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS}/")
               for h in s3_requests(cloud))


def test_s3_wrong_secret_is_refused(cloud: Cloud, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    static_keys(monkeypatch, secret="wrong")
    cloud.s3["models/fraud/model.skops"] = MODEL
    with pytest.raises(FetchError, match=r"answered 403: AccessDenied: Access Denied \(static"):
        fetch("s3://models/fraud/model.skops", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_http_fetch_and_digest_mismatch_leaves_nothing(cloud: Cloud, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    static_keys(monkeypatch)
    cloud.s3["models/fraud/model.skops"] = cloud.static["model.skops"] = MODEL
    target = tmp_path / "out.bin"
    with pytest.raises(DigestMismatch, match="expected sha256:0000"):
        fetch("s3://models/fraud/model.skops", target, "sha256:" + "0" * 64)
    assert list(tmp_path.iterdir()) == []
    assert fetch(f"{cloud.url}/static/model.skops", target, digest_of(MODEL)) == target
    into = fetch(f"{cloud.url}/static/model.skops", f"{tmp_path}/new/", digest_of(MODEL))
    assert into == tmp_path / "new" / "model.skops"
    # Plain http(s) carries no credentials: the S3 stand-in refuses unsigned requests.
    with pytest.raises(FetchError, match="403"):
        fetch(f"{cloud.url}/models/fraud/model.skops", target)


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
    with pytest.raises(FetchError, match="scheme 'ftp' is not supported"):
        fetch("ftp://host/model", tmp_path)


# --- the layout rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "kind", "name"), [
    ("s3://b/models/fraud/", "directory", "fraud"),
    ("gs://b/models/fraud/", "directory", "fraud"),
    ("file:///srv/models/fraud/", "directory", "fraud"),
    ("/srv/models/fraud/", "directory", "fraud"),
    ("https://h/x/fraud-2.tar.gz", "archive", "fraud-2"),
    ("https://h/x/fraud.tgz?X-Amz-Signature=abc", "archive", "fraud"),
    ("s3://b/x/fraud.tar", "archive", "fraud"),
    ("gs://b/fraud.zip", "archive", "fraud"),
    ("file:///m/fraud%203.zip", "archive", "fraud 3"),
    ("s3://b/models/fraud/model.skops", "file", "model.skops"),
    ("https://h/x/model.onnx", "file", "model.onnx"),
    ("https://h/x/MODEL.ZIP", "file", "MODEL.ZIP"),  # suffixes are lower case
])
def test_layout_rules(uri: str, kind: str, name: str) -> None:
    source = parse_source(uri)
    assert (source.kind, source.name) == (kind, name)


@pytest.mark.parametrize(("uri", "message"), [
    ("https://h/models/fraud/", "http(s) cannot list a directory; publish the model as an archive"),
    ("s3://bucket/", "must look like s3://bucket/key"),
    ("gs://bucket", "must look like gs://bucket/key"),
    ("s3://b/x/.tar.gz", "has no name"),
    ("file://models/fraud/", "a file URI names an absolute path"),
])
def test_layout_refusals(uri: str, message: str) -> None:
    with pytest.raises(FetchError, match=re.escape(message)):
        parse_source(uri)


# --- directories and archives -------------------------------------------------------------------


def test_local_directory_lands_at_dest_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "fraud")
    dest = tmp_path / "models"
    path, digest = fetch_verified(f"file://{root}/", dest, shell_tree_digest(root))
    assert path == dest / "fraud" and digest == shell_tree_digest(root)
    assert contents(path) == contents(root) and (path / "empty-dir").is_dir()
    assert sorted(p.name for p in dest.iterdir()) == ["fraud"]
    with pytest.raises(FetchError, match="is a directory: end the URI with '/'"):
        fetch(f"file://{root}", tmp_path / "elsewhere")


def test_local_directory_symlinks_are_refused_not_followed(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "fraud")
    (tmp_path / "secret").write_text("outside the tree")
    (root / "data" / "escape").symlink_to(tmp_path / "secret")
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match=r"data/escape in .* is a symlink"):
        fetch(f"file://{root}/", dest)
    assert list(dest.iterdir()) == []


def test_archives_unpack_to_dest_name_with_the_tree_digest(cloud: Cloud, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "source")
    expected = shell_tree_digest(root)
    archives = {"fraud-1.tar.gz": tar_of(root), "fraud-2.tgz": tar_of(root),
                "fraud-3.tar": tar_of(root, "w"), "fraud-4.zip": zip_of(root)}
    dest = tmp_path / "models"
    for name, data in archives.items():
        (tmp_path / name).write_bytes(data)
        cloud.static[name] = data
        assert artefact_digest(tmp_path / name) == expected
        local = fetch(f"file://{tmp_path / name}", dest / "local", expected)
        # Over http the tar is unpacked as it streams in, the zip downloaded first.
        remote = fetch(f"{cloud.url}/static/{name}?X-Amz-Expires=60", dest / "remote", expected)
        stem = name.split(".")[0]
        assert local == dest / "local" / stem and remote == dest / "remote" / stem
        assert contents(local) == contents(remote) == contents(root)
        assert (local / "empty-dir").is_dir()
    assert sorted(p.name for p in (dest / "remote").iterdir()) == [
        "fraud-1", "fraud-2", "fraud-3", "fraud-4"]


REFUSED_ARCHIVES = [
    ("symlink.tar.gz", tar_with(member("link", tarfile.SYMTYPE, target="/etc/passwd")),
     "'link' is a symlink"),
    ("hardlink.tar.gz", tar_with(member("a"), member("b", tarfile.LNKTYPE, target="a")),
     "'b' is a hard link"),
    ("device.tar.gz", tar_with(member("tty", tarfile.CHRTYPE)), "is a device or pipe"),
    ("absolute.tar.gz", tar_with(member("/etc/cron.d/job")), "is an absolute path"),
    ("dotdot.tar.gz", tar_with(member("../evil")), "contains '..'"),
    ("nested.tar.gz", tar_with(member("a/../../evil")), "contains '..'"),
    ("twice.tar.gz", tar_with(member("x"), member("./x")), "appears twice"),
    ("both.tar.gz", tar_with(member("a"), member("a/b")), "as both a file and a directory"),
    ("symlink.zip", zip_with(("link", b"/etc/passwd", stat.S_IFLNK | 0o777)),
     "'link' is a symlink"),
    ("dotdot.zip", zip_with(("../../evil", b"x", 0)), "contains '..'"),
    ("absolute.zip", zip_with(("/evil", b"x", 0)), "is an absolute path"),
    ("twice.zip", zip_with(("x", b"1", 0), ("x", b"2", 0)), "appears twice"),
    ("backslash.zip", zip_with(("..\\evil", b"x", 0)), "has a backslash"),
    ("garbage.tar.gz", b"not an archive " * 100, "is not a readable tar archive"),
    ("truncated.tar.gz", tar_with(member("x", data=bytes(range(256)) * 400))[:400],
     "is not a readable tar archive"),
    ("garbage.zip", b"PK not really", "is not a readable zip archive"),
    ("empty.tar.gz", tar_with(), "holds no files"),
]


@pytest.mark.parametrize(("name", "data", "message"), REFUSED_ARCHIVES,
                         ids=[case[0] for case in REFUSED_ARCHIVES])
def test_unsafe_archives_are_refused_and_leave_nothing(name: str, data: bytes, message: str,
                                                       tmp_path: Path) -> None:
    archive = tmp_path / name
    archive.write_bytes(data)
    dest = tmp_path / "models"
    with pytest.raises(FetchError, match=re.escape(message)):
        fetch(f"file://{archive}", dest)
    assert list(dest.iterdir()) == []
    with pytest.raises(FetchError, match=re.escape(message)):
        artefact_digest(archive)  # --print-digest refuses the same archives


def test_archive_limits(tmp_path: Path) -> None:
    many = tmp_path / "many.tar.gz"
    many.write_bytes(tar_with(*(member(f"f{i}") for i in range(11))))
    with pytest.raises(FetchError, match="more than 10 entries"):
        fetch(f"file://{many}", tmp_path / "a", max_files=10)
    big = tmp_path / "big.zip"
    big.write_bytes(zip_with(("zeros", bytes(5 << 20), 0)))  # 5 MiB that deflate to a few KiB
    assert big.stat().st_size < 100_000
    with pytest.raises(FetchError, match=r"more than 1048576 bytes unpacked \(the limit, --max"):
        fetch(f"file://{big}", tmp_path / "b", max_bytes=1 << 20)
    assert list((tmp_path / "a").iterdir()) == list((tmp_path / "b").iterdir()) == []
    # Sizes are counted as they are written, not only as the archive declares them.
    writer = TreeWriter(None, "stream", max_bytes=10)
    with pytest.raises(FetchError, match="more than 10 bytes"):
        writer.add_file("a", iter([b"x" * 6, b"x" * 6]))


def test_tree_digest_mismatch_leaves_nothing_and_a_match_replaces(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "fraud")
    first = shell_tree_digest(root)
    dest = tmp_path / "models"
    with pytest.raises(DigestMismatch, match=f"expected sha256:{'0' * 64}, got {first}"):
        fetch(f"file://{root}/", dest, "sha256:" + "0" * 64)
    assert list(dest.iterdir()) == []
    fetch(f"file://{root}/", dest, first)
    (root / "MLmodel").write_bytes(b"retrained")
    with pytest.raises(DigestMismatch):
        fetch(f"file://{root}/", dest, first)
    assert sorted(p.name for p in dest.iterdir()) == ["fraud"]  # the verified tree, untouched
    fetch(f"file://{root}/", dest, shell_tree_digest(root))
    assert (dest / "fraud" / "MLmodel").read_bytes() == b"retrained"
    assert sorted(p.name for p in dest.iterdir()) == ["fraud"]


def test_resolve_local_verifies_directories_in_place_and_unpacks_archives(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "fraud")
    digest = shell_tree_digest(root)
    cache = tmp_path / "cache"
    assert resolve_local(f"file://{root}/", cache, digest) == root
    with pytest.raises(DigestMismatch, match="refusing to serve it"):
        resolve_local(f"file://{root}/", cache, "sha256:" + "1" * 64)
    (tmp_path / "fraud.tgz").write_bytes(tar_of(root))
    unpacked = resolve_local(f"file://{tmp_path}/fraud.tgz", cache, digest)
    assert unpacked == cache / "fraud" and contents(unpacked) == contents(root)


# --- S3 prefixes and the pod's identity ---------------------------------------------------------


def s3_model(cloud: Cloud, tmp_path: Path) -> tuple[Path, str]:
    root = make_tree(tmp_path / "source")
    put_tree(cloud.s3, "models/models/fraud/", root)
    cloud.s3["models/models/fraud/"] = b""  # the console's "folder" object
    cloud.s3["models/models/fraud-v2/other"] = b"another model"
    cloud.s3["models/models/fraudulent"] = b"not under the prefix"
    return root, shell_tree_digest(root)


def test_s3_prefix_with_static_keys_lists_every_page(cloud: Cloud, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    static_keys(monkeypatch)
    root, digest = s3_model(cloud, tmp_path)
    path = fetch("s3://models/models/fraud/", tmp_path / "dest", digest)
    assert path == tmp_path / "dest" / "fraud" and contents(path) == contents(root)
    listings = [r.path for r in cloud.seen("/models?")]
    assert len(listings) == 4 and all("prefix=models%2Ffraud%2F" in p for p in listings)
    assert sum("continuation-token=next%2F" in p for p in listings) == 3


def test_s3_keys_that_would_escape_the_directory_are_refused(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    static_keys(monkeypatch)
    s3_model(cloud, tmp_path)
    cloud.s3["models/models/fraud/../../../etc/cron.d/job"] = b"* * * * * root evil"
    with pytest.raises(FetchError, match=r"entry '\.\./\.\./\.\./etc/cron\.d/job' contains"):
        fetch("s3://models/models/fraud/", tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_s3_with_web_identity_assumes_the_role(cloud: Cloud, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    web_identity(monkeypatch, tmp_path)
    _, digest = s3_model(cloud, tmp_path)
    fetch("s3://models/models/fraud/", tmp_path / "dest", digest)
    (sts,) = cloud.seen("/sts/")
    form = {key: value[0] for key, value in parse_qs(sts.body.decode()).items()}
    assert form["WebIdentityToken"] == WEB_TOKEN and form["RoleArn"] == ROLE  # the file's token
    assert "authorization" not in sts.headers  # the token is the proof: STS is not signed
    requests = s3_requests(cloud)
    assert len(requests) == 4 + 7  # 4 listing pages, 7 objects, each one checked by the stand-in
    assert all(h["x-amz-security-token"] == SESSION[2]
               and f"Credential={SESSION[0]}/" in h["authorization"] for h in requests)


def test_s3_web_identity_refused_by_sts(cloud: Cloud, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    web_identity(monkeypatch, tmp_path, token="expired-token")
    with pytest.raises(FetchError) as refused:
        fetch("s3://models/models/fraud/", tmp_path / "dest")
    message = str(refused.value)
    assert message.startswith(f"STS AssumeRoleWithWebIdentity for {ROLE} at ")
    assert "answered 400: InvalidIdentityToken: Couldn't verify the token" in message
    assert "expired-token" not in message and "\n" not in message
    assert cloud.seen("/models") == []


def test_s3_with_pod_identity(cloud: Cloud, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    pod_identity(monkeypatch, tmp_path, cloud)
    root, digest = s3_model(cloud, tmp_path)
    cloud.s3["models/fraud.tar.gz"] = tar_of(root)
    assert contents(fetch("s3://models/fraud.tar.gz", tmp_path / "dest", digest)) == contents(root)
    (agent,) = cloud.seen("/pod-identity")
    assert agent.headers["authorization"] == CONTAINER_TOKEN
    assert all(h["x-amz-security-token"] == POD[2] for h in s3_requests(cloud))


def test_s3_credentials_precedence(cloud: Cloud, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cloud.s3["models/m.onnx"] = MODEL
    pod_identity(monkeypatch, tmp_path, cloud)
    web_identity(monkeypatch, tmp_path)
    fetch("s3://models/m.onnx", tmp_path / "a", digest_of(MODEL))
    assert len(cloud.seen("/sts/")) == 1 and cloud.seen("/pod-identity") == []
    static_keys(monkeypatch)
    fetch("s3://models/m.onnx", tmp_path / "b", digest_of(MODEL))
    assert len(cloud.seen("/sts/")) == 1 and cloud.seen("/pod-identity") == []
    assert f"Credential={ACCESS}/" in s3_requests(cloud)[-1]["authorization"]


def test_container_credentials_go_only_to_the_agent(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.2.3/creds")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "do-not-send")
    with pytest.raises(FetchError, match="must be https, loopback or the EKS/ECS agent's"):
        fetch("s3://models/m.onnx", tmp_path)


def test_s3_unsigned_without_credentials(cloud: Cloud, tmp_path: Path) -> None:
    cloud.s3["public/m.onnx"] = cloud.s3["models/m.onnx"] = MODEL
    assert fetch("s3://public/m.onnx", tmp_path).read_bytes() == MODEL
    with pytest.raises(FetchError, match=r"403: AccessDenied: Access Denied \(unsigned: no AWS"):
        fetch("s3://models/m.onnx", tmp_path)


# --- GCS ----------------------------------------------------------------------------------------


def test_gcs_with_the_metadata_servers_token(cloud: Cloud, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCE_METADATA_HOST", cloud.url.removeprefix("http://"))
    root = make_tree(tmp_path / "source")
    put_tree(cloud.gcs, "models/fraud/", root)
    cloud.gcs["models/fraud/"] = b""
    cloud.gcs["models/fraud-v2/x"] = b"another model"
    cloud.gcs["models/one/model v1.onnx"] = MODEL
    path = fetch("gs://models/fraud/", tmp_path / "dest", shell_tree_digest(root))
    assert path == tmp_path / "dest" / "fraud" and contents(path) == contents(root)
    single = fetch("gs://models/one/model%20v1.onnx", tmp_path / "dest", digest_of(MODEL))
    assert single == tmp_path / "dest" / "model v1.onnx"
    storage = cloud.seen("/storage/v1/b/models/o")
    assert len([r for r in storage if "pageToken=" in r.path]) == 3  # 4 pages of 2
    assert any(r.path.startswith("/storage/v1/b/models/o/one%2Fmodel%20v1.onnx?alt=media")
               for r in storage)
    assert all(r.headers["authorization"] == f"Bearer {GCS_TOKEN}" for r in storage)
    assert all(r.headers["metadata-flavor"] == "Google" for r in cloud.seen("/computeMetadata"))


def test_gcs_anonymous_without_a_metadata_server(cloud: Cloud, tmp_path: Path) -> None:
    cloud.gcs["public/m.onnx"] = cloud.gcs["models/m.onnx"] = MODEL
    assert fetch("gs://public/m.onnx", tmp_path).read_bytes() == MODEL
    with pytest.raises(FetchError, match=r"answered 401: Anonymous caller .* \(anonymous: no "
                                         r"metadata server at 127\.0\.0\.1"):
        fetch("gs://models/m.onnx", tmp_path)


# --- messages and the command line --------------------------------------------------------------


def test_credentials_are_masked_in_every_message(cloud: Cloud, tmp_path: Path) -> None:
    uri = f"http://reader:s3cret@{cloud.url.removeprefix('http://')}/static/missing.onnx"
    with pytest.raises(FetchError) as refused:
        fetch(uri + "?X-Amz-Signature=deadbeef", tmp_path)
    message = str(refused.value)
    assert "answered 404: not found: no such file" in message and "\n" not in message
    assert "s3cret" not in message and "deadbeef" not in message
    assert "http://***@127.0.0.1" in message
    log = tmp_path / "termination-log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELOPS_TERMINATION_LOG", str(log))
        assert main([uri + "?sig=deadbeef", str(tmp_path)]) == 2
    assert "answered 404" in log.read_text()
    assert "s3cret" not in log.read_text() and "deadbeef" not in log.read_text()


def test_cli_limits_and_print_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_tree(tmp_path / "fraud")
    archive = tmp_path / "fraud.zip"
    archive.write_bytes(zip_of(root))
    assert main(["--print-digest", str(archive)]) == 0
    assert capsys.readouterr().out.strip() == shell_tree_digest(root)
    log = tmp_path / "log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELOPS_TERMINATION_LOG", str(log))
        assert main([f"file://{archive}", str(tmp_path / "dest"), "--max-bytes", "100"]) == 2
    assert "more than 100 bytes unpacked (the limit, --max-bytes)" in log.read_text()
    assert main(["--print-digest", str(tmp_path / "missing")]) == 2
    # Without --digest the digest to pin is printed.
    (tmp_path / "m.onnx").write_bytes(MODEL)
    assert main([f"file://{tmp_path}/m.onnx", str(tmp_path / "out")]) == 0
    assert digest_of(MODEL) in capsys.readouterr().out


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
    printed = subprocess.run([sys.executable, "-m", "modelops_serving.fetch", "--print-digest",
                              str(root)], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == shell_tree_digest(root)
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


# --- hostile sources: names, redirects, limits, secrets, failures -------------------------------


@pytest.mark.parametrize(("path", "message"), [
    ("", "has no name to put the file under"),
    ("/static/..", "has no name"),
    ("/static/%2E%2E", "has no name"),
    ("/static/.", "has no name"),
    ("/static/a%00b.onnx", "a NUL"),
    ("/static/a%5Cb.onnx", "a backslash"),
    ("/static/a%0Ab.onnx", "a line break"),
])
def test_names_that_could_escape_dest_are_refused_before_any_request(
        cloud: Cloud, tmp_path: Path, path: str, message: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(FetchError, match=message):
        fetch(cloud.url + path, f"{dest}/")
    assert list(dest.iterdir()) == [] and cloud.requests == []


def test_gcs_names_that_would_escape_the_directory_are_refused(cloud: Cloud,
                                                                tmp_path: Path) -> None:
    cloud.public.add("models")
    cloud.gcs["models/fraud/model.onnx"] = MODEL
    cloud.gcs["models/fraud/../../escape"] = b"evil"
    with pytest.raises(FetchError, match=r"entry '\.\./\.\./escape' contains '\.\.'"):
        fetch("gs://models/fraud/", tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def assert_no_credentials(requests: list[Request]) -> None:
    assert requests
    for request in requests:
        sent = {name for name in request.headers if name == "authorization" or name == "cookie"
                or name.startswith("x-amz-")}
        assert not sent, (request.path, sent)


def test_redirects_to_another_origin_carry_no_credentials(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 (SigV4 with a session token), GCS (a bearer token) and http with userinfo, each
    redirected to another port: what arrives there carries none of it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SESSION[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SESSION[1])
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION[2])
    monkeypatch.setenv("GCE_METADATA_HOST", cloud.url.removeprefix("http://"))
    host = cloud.url.removeprefix("http://")
    with running_cloud() as other:
        other.static["model.onnx"] = MODEL
        elsewhere = f"{other.url}/static/model.onnx"
        cloud.redirects["/models/fraud/model.onnx"] = elsewhere
        cloud.redirects["/storage/v1/b/models/o/fraud%2Fmodel.onnx"] = elsewhere
        cloud.redirects["/static/private.onnx"] = elsewhere
        for uri in ("s3://models/fraud/model.onnx", "gs://models/fraud/model.onnx",
                    f"http://reader:s3cret@{host}/static/private.onnx"):
            assert fetch(uri, tmp_path / "m.onnx", digest_of(MODEL)).read_bytes() == MODEL
        assert_no_credentials(other.requests)
    # The first hop had them (they were withheld, not absent).
    first = [r.headers for r in cloud.requests if r.path.split("?")[0] in cloud.redirects]
    assert [h["authorization"].split()[0] for h in first] == ["AWS4-HMAC-SHA256", "Bearer",
                                                              "Basic"]
    assert first[0]["x-amz-security-token"] == SESSION[2]


def test_same_origin_redirects_keep_credentials_but_no_cookies(cloud: Cloud,
                                                                tmp_path: Path) -> None:
    cloud.static["model.onnx"] = MODEL
    cloud.redirects["/static/latest.onnx"] = "/static/model.onnx"  # relative: same origin
    host = cloud.url.removeprefix("http://")
    fetch(f"http://reader:s3cret@{host}/static/latest.onnx", tmp_path / "m.onnx",
          digest_of(MODEL))
    hops = [r.headers for r in cloud.requests]
    assert len(hops) == 2 and all(h["authorization"].startswith("Basic ") for h in hops)
    assert "cookie" not in hops[1]  # the redirect set one; no cookie is ever kept


@pytest.mark.parametrize(("location", "message"), [
    ("/static/loop", "more than 5 redirects"),
    ("file:///etc/hostname", "redirected to a file: URL; only http(s) is followed"),
])
def test_redirect_loops_and_other_schemes_are_refused(cloud: Cloud, tmp_path: Path,
                                                      location: str, message: str) -> None:
    cloud.redirects["/static/loop"] = location
    with pytest.raises(FetchError, match=re.escape(message)):
        fetch(f"{cloud.url}/static/loop", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["/drip", "/silent"])
def test_total_time_is_bounded(cloud: Cloud, tmp_path: Path, path: str) -> None:
    """A byte every 0.1 s never trips a read timeout; a server that never answers trips it
    only after --timeout. --max-seconds bounds both."""
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"gave up after 1 s \(the limit, --max-seconds\)"):
        fetch(f"{cloud.url}{path}", tmp_path / "m.onnx", max_seconds=1)
    assert time.monotonic() - started < 30  # generous: the point is that it ends
    assert list(tmp_path.iterdir()) == []


def test_total_size_of_a_single_file_is_bounded(cloud: Cloud, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"more than 1048576 bytes downloaded \(the limit, "
                       r"--max-bytes\)"):
        fetch(f"{cloud.url}/endless", tmp_path / "m.onnx", max_bytes=1 << 20)
    assert list(tmp_path.iterdir()) == []


SECRETS = ("pa55word", "sig-secret", "sas-secret", "tok-secret", "cookie-secret")


def run_fetch_cli(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """modelops-fetch as a process: exit code, stdout + stderr, termination message."""
    log = tmp_path / "termination-log"
    log.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "modelops_serving.fetch", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MODELOPS_TERMINATION_LOG": str(log), **env})
    message = log.read_text() if log.exists() else ""
    return done.returncode, done.stdout + done.stderr, message


def test_cli_failures_are_one_line_without_secrets_or_tracebacks(cloud: Cloud,
                                                                 tmp_path: Path) -> None:
    base = f"http://reader:pa55word@{cloud.url.removeprefix('http://')}"
    query = "?X-Amz-Signature=sig-secret&sig=sas-secret&token=tok-secret"
    dest = f"{tmp_path}/dest/"
    cloud.redirects["/static/moved.onnx"] = "file:///etc/hostname" + query
    failures = [
        ([base + "/static/missing.onnx" + query, dest], {}, "answered 404"),
        ([base + "/drip" + query, dest], {"MODELOPS_MAX_SECONDS": "1"}, "--max-seconds"),
        ([base + "/endless" + query, dest], {"MODELOPS_MAX_BYTES": "100000"}, "--max-bytes"),
        ([base + "/static/moved.onnx" + query, dest], {}, "only http(s) is followed"),
        ([base + "/static/a%00b.onnx" + query, dest], {}, "a NUL"),
        ([base + "/static/" + query, dest], {}, "cannot list a directory"),
        ([base + "/static/m.onnx" + query], {}, "URI and DEST are required"),
        ([base + "/static/m.onnx" + query, dest], {"MODELOPS_TIMEOUT": "soon"},
         "invalid float value: 'soon'"),
        ([base + "/static/m.onnx" + query, dest, "--digest", "sha256:abc"], {},
         "is not valid: expected 'sha256:'"),
    ]
    for args, env, fragment in failures:
        code, output, message = run_fetch_cli(tmp_path, *args, **env)
        assert code != 0 and fragment in message, (args, output)
        assert "\n" not in message.strip() and "Traceback" not in output, output
        assert not [s for s in SECRETS if s in output + message], (args, output)
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").iterdir()) == []


def test_cli_success_prints_the_uri_without_secrets(cloud: Cloud, tmp_path: Path) -> None:
    cloud.static["model.onnx"] = MODEL
    uri = (f"http://reader:pa55word@{cloud.url.removeprefix('http://')}/static/model.onnx"
           "?token=tok-secret")
    code, output, message = run_fetch_cli(tmp_path, uri, f"{tmp_path}/", "--digest",
                                          digest_of(MODEL))
    assert code == 0 and message == ""
    assert "fetched http://***@127.0.0.1" in output and "?***" in output
    assert not [s for s in SECRETS if s in output]


def test_the_model_server_logs_no_secret_of_its_uri(cloud: Cloud, models: Models,
                                                    log_dir: Path, spawn: list[Program]) -> None:
    """httpx logs each request's URL at INFO, the model server's level."""
    cloud.static["classifier.skops"] = models.classifier_skops.read_bytes()
    uri = (f"http://reader:pa55word@{cloud.url.removeprefix('http://')}/static/"
           "classifier.skops?X-Amz-Signature=sig-secret")
    server = model_server("fraud", uri, "sklearn", "v1")
    spawn.append(server.start(log_dir))
    server.wait_ready("/v2/health/ready")
    assert "HTTP Request: GET http://***@127.0.0.1" in server.log()
    assert not [s for s in SECRETS if s in server.log()]
