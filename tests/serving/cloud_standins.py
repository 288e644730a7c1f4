"""Stand-ins for the cloud services modelops-fetch talks to, on one local HTTP server.

* S3, path-style (``/bucket/key``, ``/bucket?list-type=2``): GetObject and ListObjectsV2 with
  continuation tokens; every request's SigV4 signature is checked by an implementation written
  here from the specification, with the secret of the access key it names (a session key only
  with its session token).
* STS (``POST /sts/``): AssumeRoleWithWebIdentity, unsigned, answering session credentials for
  the right web identity token.
* The EKS Pod Identity agent (``GET /pod-identity``): JSON credentials for the right token.
* GCS's JSON API (``/storage/v1/b/…``): objects and paginated listings, a bearer token needed
  except for public buckets; the GCE metadata server (``/computeMetadata/v1/…``).
* Plain files (``GET /static/NAME``).
* Hostile answers, for modelops-fetch's limits: a redirect for any path in ``redirects``
  (before anything else, so an S3 or GCS object can be redirected too), with the cookie
  ``session=…`` set; ``GET /drip`` sends a byte every 0.1 s; ``GET /endless`` sends zeros
  until the client hangs up; ``GET /silent`` never answers.

Every request is recorded for the tests' assertions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, quote, unquote
from xml.sax.saxutils import escape

REGION = "eu-west-3"
ACCESS, SECRET = "AKIDTEST", "secret/for+tests"
ROLE = "arn:aws:iam::123456789012:role/model-reader"
WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig"
SESSION = ("ASIASESSION", "session/secret", "session-token-from-sts")
CONTAINER_TOKEN = "pod-identity-agent-token"
POD = ("ASIAPODIDENTITY", "pod/secret", "session-token-from-pod-identity")
GCS_TOKEN = "ya29.token-from-the-metadata-server"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Cloud:
    """What the stand-ins hold, and every request they were sent."""

    s3: dict[str, bytes] = field(default_factory=dict)  # "bucket/key" -> bytes
    gcs: dict[str, bytes] = field(default_factory=dict)  # "bucket/name" -> bytes
    static: dict[str, bytes] = field(default_factory=dict)  # name -> bytes
    public: set[str] = field(default_factory=lambda: {"public"})  # buckets open to anyone
    keys: dict[str, tuple[str, str | None]] = field(default_factory=lambda: {
        ACCESS: (SECRET, None), SESSION[0]: SESSION[1:], POD[0]: POD[1:]})
    page_size: int = 2
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def seen(self, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(prefix)]


def expected_signature(method: str, raw_path: str, headers: dict[str, str], signed: str,
                       secret: str) -> str:
    """SigV4 of a bodiless request, written from the specification (not from sigv4.py)."""
    path, _, query = raw_path.partition("?")
    pairs = sorted((quote(unquote(k), safe=""), quote(unquote(v), safe=""))
                   for k, v in (p.split("=", 1) for p in query.split("&") if p))
    names = signed.split(";")
    canonical = "\n".join([method, path, "&".join(f"{k}={v}" for k, v in pairs),
                           "".join(f"{n}:{headers[n].strip()}\n" for n in names), signed,
                           headers["x-amz-content-sha256"]])
    amz_date = headers["x-amz-date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n" + hashlib.sha256(
        canonical.encode()).hexdigest()
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    @property
    def cloud(self) -> Cloud:
        return self.server.cloud  # type: ignore[attr-defined,no-any-return]

    def answer(self, status: int, body: bytes | str, content_type: str = "application/xml",
               headers: dict[str, str] | None = None) -> None:
        payload = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def record(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                          self.rfile.read(length))
        self.cloud.requests.append(request)
        return request

    def do_POST(self) -> None:
        request = self.record()
        if not self.path.startswith("/sts/"):
            self.answer(404, "no such endpoint", "text/plain")
            return
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        call = (form.get("Action"), form.get("Version"), form.get("RoleArn"))
        if call != ("AssumeRoleWithWebIdentity", "2011-06-15", ROLE) or (
                "authorization" in request.headers):
            self.answer(400, "<ErrorResponse><Error><Code>InvalidAction</Code></Error>"
                        "</ErrorResponse>")
        elif form.get("WebIdentityToken") != WEB_TOKEN:
            self.answer(400, '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                        "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\n<Message>"
                        "Couldn't verify the token</Message></Error></ErrorResponse>")
        else:
            self.answer(200, f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:models:fraud</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>{ROLE}/{form.get("RoleSessionName")}</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{SESSION[0]}</AccessKeyId>
      <SecretAccessKey>{SESSION[1]}</SecretAccessKey>
      <SessionToken>{SESSION[2]}</SessionToken>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""")

    def do_GET(self) -> None:
        request = self.record()
        path = self.path.partition("?")[0]
        if path in self.cloud.redirects:
            self.answer(302, "", "text/plain", {"Location": self.cloud.redirects[path],
                                                "Set-Cookie": "session=cookie-secret; Path=/"})
        elif path in ("/drip", "/endless", "/silent"):
            self.hostile(path)
        elif path.startswith("/static/"):
            body = self.cloud.static.get(unquote(path.removeprefix("/static/")))
            if body is None:
                self.answer(404, "not found:\nno such file\n", "text/plain")
            else:
                self.answer(200, body, "application/octet-stream")
        elif path == "/pod-identity":
            if request.headers.get("authorization") != CONTAINER_TOKEN:
                self.answer(401, '{"message": "bad token"}', "application/json")
            else:
                self.answer(200, json.dumps({"AccessKeyId": POD[0], "SecretAccessKey": POD[1],
                                             "Token": POD[2],
                                             "Expiration": "2030-01-01T00:00:00Z"}),
                            "application/json")
        elif path.startswith("/computeMetadata/v1/"):
            self.metadata(request, path)
        elif path.startswith("/storage/v1/b/"):
            self.gcs(request, path)
        else:
            self.s3(request, path)

    def hostile(self, path: str) -> None:
        """Answers that never end by themselves; each stops when the client hangs up (the
        streams also after 60 s)."""
        if path == "/silent":
            self.rfile.read(1)  # returns once the client hangs up
            return
        deadline = time.monotonic() + 60
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(1 << 40))
        self.end_headers()
        chunk, pause = (b"x", 0.1) if path == "/drip" else (b"\0" * 65536, 0.0)
        try:
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass  # the client hung up

    def metadata(self, request: Request, path: str) -> None:
        if (request.headers.get("metadata-flavor") != "Google"
                or path != "/computeMetadata/v1/instance/service-accounts/default/token"):
            self.answer(403, "missing Metadata-Flavor", "text/plain")
            return
        self.answer(200, json.dumps({"access_token": GCS_TOKEN, "expires_in": 3599,
                                     "token_type": "Bearer"}), "application/json",
                    {"Metadata-Flavor": "Google"})

    def gcs(self, request: Request, path: str) -> None:
        params = dict(parse_qsl(self.path.partition("?")[2]))
        bucket, _, rest = path.removeprefix("/storage/v1/b/").partition("/o")
        bucket = unquote(bucket)
        if bucket not in self.cloud.public and (
                request.headers.get("authorization") != f"Bearer {GCS_TOKEN}"):
            self.answer(401, json.dumps({"error": {"code": 401, "message": "Anonymous caller "
                                                   "does not have storage.objects.get access"}}),
                        "application/json")
        elif rest == "":
            prefix = params.get("prefix", "")
            names = sorted(k.split("/", 1)[1] for k in self.cloud.gcs
                           if k.startswith(bucket + "/") and k.split("/", 1)[1].startswith(prefix))
            start = int(params.get("pageToken", "0"))
            page: dict[str, object] = {"kind": "storage#objects", "items": [
                {"name": n, "bucket": bucket, "size": str(len(self.cloud.gcs[f"{bucket}/{n}"]))}
                for n in names[start:start + self.cloud.page_size]]}
            if start + self.cloud.page_size < len(names):
                page["nextPageToken"] = str(start + self.cloud.page_size)
            self.answer(200, json.dumps(page), "application/json")
        else:
            body = self.cloud.gcs.get(f"{bucket}/{unquote(rest.removeprefix('/'))}")
            if body is None or params.get("alt") != "media":
                self.answer(404, json.dumps({"error": {"code": 404, "message": "No such object"}}),
                            "application/json")
            else:
                self.answer(200, body, "application/octet-stream")

    def s3_authorized(self, request: Request, bucket: str) -> bool:
        auth = request.headers.get("authorization")
        if auth is None:
            return bucket in self.cloud.public
        fields = dict(part.strip().split("=", 1) for part in
                      auth.removeprefix("AWS4-HMAC-SHA256 ").split(",") if "=" in part)
        secret, token = self.cloud.keys.get(fields.get("Credential", "").split("/")[0],
                                            (None, None))
        signed = fields.get("SignedHeaders", "")
        if secret is None or (token is not None and (
                request.headers.get("x-amz-security-token") != token
                or "x-amz-security-token" not in signed.split(";"))):
            return False
        return fields.get("Signature") == expected_signature("GET", self.path, request.headers,
                                                             signed, secret)

    def s3(self, request: Request, path: str) -> None:
        bucket, _, key = unquote(path).removeprefix("/").partition("/")
        if not self.s3_authorized(request, bucket):
            self.answer(403, "<Error>\n<Code>AccessDenied</Code>\n<Message>Access Denied"
                        "</Message>\n</Error>")
        elif key == "":
            self.s3_list(bucket, dict(parse_qsl(self.path.partition("?")[2])))
        elif f"{bucket}/{key}" in self.cloud.s3:
            self.answer(200, self.cloud.s3[f"{bucket}/{key}"], "application/octet-stream")
        else:
            self.answer(404, "<Error><Code>NoSuchKey</Code><Message>The specified key does not "
                        "exist.</Message></Error>")

    def s3_list(self, bucket: str, params: dict[str, str]) -> None:
        prefix = params.get("prefix", "")
        keys = sorted(k.split("/", 1)[1] for k in self.cloud.s3
                      if k.startswith(bucket + "/") and k.split("/", 1)[1].startswith(prefix))
        # An opaque token with characters that must be encoded to be signed right.
        token = params.get("continuation-token")
        start = int(token.split("/")[1].rstrip("+=")) if token else 0
        page = keys[start:start + self.cloud.page_size]
        more = start + self.cloud.page_size < len(keys)
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{len(self.cloud.s3[f'{bucket}/{k}'])}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>" for k in page)
        following = (f"<NextContinuationToken>next/{start + self.cloud.page_size}+="
                     "</NextContinuationToken>" if more else "")
        self.answer(200, '<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<Name>{bucket}</Name><Prefix>{escape(prefix)}</Prefix>"
                    f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{self.cloud.page_size}</MaxKeys>"
                    f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{following}"
                    f"{contents}</ListBucketResult>")


@contextmanager
def running_cloud() -> Iterator[Cloud]:
    cloud = Cloud()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.cloud = cloud  # type: ignore[attr-defined]
    cloud.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield cloud
    finally:
        server.shutdown()
        server.server_close()
