"""S3 and Google Cloud Storage for ``modelops-fetch``: requests, prefix listings, credentials.

**S3** (``s3://``; path-style through ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` for
S3-compatible stores, else ``https://BUCKET.s3.REGION.amazonaws.com``). Credentials, first
found wins, as in the AWS SDKs:

1. static keys: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``);
2. web identity (IRSA): ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, exchanged by STS
   ``AssumeRoleWithWebIdentity`` (an unsigned call to ``AWS_ENDPOINT_URL_STS``, else
   ``AWS_ENDPOINT_URL``, else the regional STS endpoint) for session credentials;
3. container credentials (EKS Pod Identity, ECS): ``AWS_CONTAINER_CREDENTIALS_FULL_URI``
   (or ``…_RELATIVE_URI``) with the token in ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (or
   ``AWS_CONTAINER_AUTHORIZATION_TOKEN``);
4. none: unsigned requests (public buckets).

**GCS** (``gs://``) through the JSON API at ``STORAGE_EMULATOR_HOST`` (fake-gcs-server) or
``https://storage.googleapis.com``, with a bearer token from the metadata server
(``GCE_METADATA_HOST``, default ``169.254.169.254``; Workload Identity on GKE) when it answers
within ``METADATA_TIMEOUT`` seconds, else anonymously.

Credentials never appear in messages, and never follow a redirect to another origin:
``open_get`` follows redirects itself and sends the headers it was given (SigV4, bearer
tokens) only to the scheme, host and port they were made for; every other request is sent
without following redirects (the client's default here).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

from .sigv4 import Credentials, canonical_query, sign_headers
from .trees import FetchError

METADATA_TIMEOUT = 2.0
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Hosts the AWS SDKs send a container authorization token to over plain http.
CONTAINER_HOSTS = {"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"}


class ObjectStore(Protocol):
    auth: str  # how requests are authenticated, for error messages

    def object(self, key: str) -> tuple[str, dict[str, str]]:
        """URL and headers of a GET of one object."""

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object whose key starts with ``prefix``."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(response: httpx.Response, what: str) -> ET.Element:
    try:
        return ET.fromstring(response.content)
    except ET.ParseError as exc:
        raise FetchError(f"{what}: the answer is not XML ({exc})") from exc


def _xml_text(element: ET.Element, name: str) -> str | None:
    """Text of the first element called ``name`` under ``element``, whatever its namespace."""
    return next((e.text or "" for e in element.iter() if _local(e.tag) == name), None)


def _detail(response: httpx.Response) -> str:
    """A short reason from an error answer: S3/STS XML, GCS JSON or the text."""
    try:
        error = response.json().get("error", {})
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    except (ValueError, AttributeError):
        pass
    try:
        root = ET.fromstring(response.content)
        code, message = _xml_text(root, "Code"), _xml_text(root, "Message")
        if code or message:
            return ": ".join(p for p in (code, message) if p)[:300]
    except ET.ParseError:
        pass
    return response.text[:300]


def check(response: httpx.Response, what: str, auth: str = "") -> None:
    """Raise a FetchError unless the answer is 200."""
    if response.status_code != 200:
        response.read()
        note = f" ({auth})" if auth and response.status_code in (401, 403) else ""
        raise FetchError(
            f"{what} answered {response.status_code}: {_detail(response)}{note}"
        )


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def open_get(client: httpx.Client, url: str, headers: Mapping[str, str] | None = None
             ) -> httpx.Response:
    """A streamed GET (the caller closes it) that follows up to ``MAX_REDIRECTS`` redirects.

    httpx drops only ``Authorization`` on a redirect to another origin; SigV4's
    ``X-Amz-Security-Token`` (a credential) and the rest would go along. Here a redirect to
    another scheme, host or port gets none of ``headers``, and userinfo of the first URL
    (``https://user:password@host/``) is not carried either: a relative ``Location`` keeps the
    origin, an absolute one names its own.
    """
    request = client.build_request("GET", url, headers=headers)
    origin = _origin(request.url)
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(request, stream=True)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or location is None:
            return response
        response.close()
        target = request.url.join(location)
        if target.scheme not in ("http", "https"):
            raise FetchError(f"GET {url} was redirected to a {target.scheme}: URL; only http(s) "
                             "is followed")
        same_origin = _origin(target) == origin
        request = client.build_request("GET", target, headers=headers if same_origin else None)
    raise FetchError(f"GET {url}: more than {MAX_REDIRECTS} redirects")


def _region(env: Mapping[str, str]) -> str:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"


def _aws_domain(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def _read_token(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FetchError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def web_identity_credentials(client: httpx.Client, env: Mapping[str, str]) -> Credentials:
    """STS AssumeRoleWithWebIdentity with the projected service-account token (IRSA)."""
    role = env["AWS_ROLE_ARN"]
    token = _read_token(env["AWS_WEB_IDENTITY_TOKEN_FILE"], "web identity token")
    region = _region(env)
    endpoint = (env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL")
                or f"https://sts.{region}.{_aws_domain(region)}")
    form = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": role,
        "RoleSessionName": env.get("AWS_ROLE_SESSION_NAME") or f"modelops-fetch-{int(time.time())}",
        "WebIdentityToken": token,
    }
    what = f"STS AssumeRoleWithWebIdentity for {role} at {endpoint}"
    response = client.post(endpoint, data=form)  # unsigned: the token is the proof
    check(response, what)
    root = _xml(response, what)
    access, secret = _xml_text(root, "AccessKeyId"), _xml_text(root, "SecretAccessKey")
    if not access or not secret:
        raise FetchError(f"{what}: the answer holds no credentials")
    return Credentials(access, secret, _xml_text(root, "SessionToken") or None)


def container_credentials(client: httpx.Client, env: Mapping[str, str]) -> Credentials:
    """Credentials from the EKS Pod Identity agent (or ECS's endpoint)."""
    uri = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or (
        "http://169.254.170.2" + env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"])
    host = (urlsplit(uri).hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if urlsplit(uri).scheme != "https" and not (loopback or host in CONTAINER_HOSTS):
        raise FetchError(f"container credentials URI {uri} must be https, loopback or the "
                         "EKS/ECS agent's address (the token is not sent elsewhere)")
    token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    token = (_read_token(token_file, "container authorization token") if token_file
             else env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"))
    what = f"container credentials at {uri}"
    response = client.get(uri, headers={"Authorization": token} if token else {})
    check(response, what)
    try:
        data = response.json()
        return Credentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"))
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{what}: the answer holds no credentials") from exc


def aws_credentials(client: httpx.Client, env: Mapping[str, str]) -> tuple[Credentials | None, str]:
    """The first credentials found (see the module's docstring), and how they were found."""
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        return Credentials(access, secret, env.get("AWS_SESSION_TOKEN") or None), "static keys"
    if env.get("AWS_ROLE_ARN") and env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        role = env["AWS_ROLE_ARN"]
        return web_identity_credentials(client, env), f"web identity, role {role}"
    if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return container_credentials(client, env), "container credentials"
    return None, "unsigned: no AWS credentials in the environment"


class S3:
    def __init__(self, client: httpx.Client, bucket: str,
                 env: Mapping[str, str] = os.environ) -> None:
        self.client, self.bucket, self.region = client, bucket, _region(env)
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if endpoint:
            # S3-compatible stores are addressed path-style: endpoint/bucket/key.
            base = urlsplit(endpoint.rstrip("/"))
            self.scheme, self.host, self.root = base.scheme, base.netloc, f"{base.path}/{bucket}"
        else:
            domain = _aws_domain(self.region)
            self.scheme, self.host = "https", f"{bucket}.s3.{self.region}.{domain}"
            self.root = ""
        self.credentials, self.auth = aws_credentials(client, env)

    def _request(self, path: str, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        headers: dict[str, str] = {}
        if self.credentials:
            headers = sign_headers("GET", self.host, path, query, self.credentials, self.region,
                                   dt.datetime.now(dt.UTC))
            headers.pop("host")
        url = f"{self.scheme}://{self.host}{quote(path, safe='/~')}"
        return (url + "?" + canonical_query(query) if query else url), headers

    def object(self, key: str) -> tuple[str, dict[str, str]]:
        return self._request(f"{self.root}/{key}", {})

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            url, headers = self._request(self.root or "/", query)
            what = f"listing s3://{self.bucket}/{prefix}"
            response = self.client.get(url, headers=headers)
            check(response, what, self.auth)
            root = _xml(response, what)
            for contents in (e for e in root if _local(e.tag) == "Contents"):
                yield _xml_text(contents, "Key") or "", int(_xml_text(contents, "Size") or 0)
            if _xml_text(root, "IsTruncated") != "true":
                return
            token = _xml_text(root, "NextContinuationToken")
            if not token:
                raise FetchError(f"{what}: a truncated page without a continuation token")


def gcs_token(client: httpx.Client, env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Authorization headers from the metadata server, or none when it is not there."""
    host = env.get("GCE_METADATA_HOST") or "169.254.169.254"
    url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
    try:
        response = client.get(url, headers={"Metadata-Flavor": "Google"},
                              timeout=METADATA_TIMEOUT, follow_redirects=False)
    except httpx.TransportError:
        return {}, f"anonymous: no metadata server at {host}"
    if response.status_code != 200 or response.headers.get("Metadata-Flavor") != "Google":
        return {}, f"anonymous: the metadata server at {host} answered {response.status_code}"
    try:
        token = response.json()["access_token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"the metadata server at {host} gave no access token") from exc
    return {"Authorization": f"Bearer {token}"}, f"metadata server token from {host}"


class GCS:
    def __init__(self, client: httpx.Client, bucket: str,
                 env: Mapping[str, str] = os.environ) -> None:
        self.client, self.bucket = client, bucket
        emulator = env.get("STORAGE_EMULATOR_HOST")
        if emulator:
            self.endpoint = (emulator if "://" in emulator else "http://" + emulator).rstrip("/")
        else:
            self.endpoint = "https://storage.googleapis.com"
        self.bucket_url = f"{self.endpoint}/storage/v1/b/{quote(bucket, safe='')}/o"
        self.headers, self.auth = gcs_token(client, env)

    def object(self, key: str) -> tuple[str, dict[str, str]]:
        return f"{self.bucket_url}/{quote(key, safe='')}?alt=media", dict(self.headers)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        params = {"prefix": prefix}
        while True:
            what = f"listing gs://{self.bucket}/{prefix}"
            response = self.client.get(self.bucket_url, params=params, headers=self.headers)
            check(response, what, self.auth)
            try:
                page = response.json()
                items = [(item["name"], int(item.get("size", 0))) for item in page.get("items", [])]
                token = page.get("nextPageToken")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise FetchError(f"{what}: not a JSON object listing") from exc
            yield from items
            if not token:
                return
            params["pageToken"] = token


def object_store(scheme: str, bucket: str, client: httpx.Client,
                 env: Mapping[str, str] | None = None) -> ObjectStore:
    env = os.environ if env is None else env
    return S3(client, bucket, env) if scheme == "s3" else GCS(client, bucket, env)


__all__ = ["GCS", "S3", "ObjectStore", "aws_credentials", "check", "container_credentials",
           "gcs_token", "object_store", "open_get", "web_identity_credentials"]
