"""Certificates and credentials for a loopback-only control plane.

One CA signs the API server's serving certificate; the service-account key pair signs tokens;
a static admin token (group system:masters) serves every client. Made with `cryptography`, so no
openssl binary is needed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The first address of --service-cluster-ip-range is the `kubernetes` Service's IP. A /16 leaves
# room for thousands of Services (benchmarks create hundreds); pods get another range.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
POD_CIDR = "10.244.0.0/16"
KUBERNETES_SERVICE_IP = "10.0.0.1"
ADMIN_USER = "admin"
# A real node reaches the API server at its own address (nodeconfig.NODE_IP), through a relay.
NODE_API_ADDRESS = "10.247.0.2"
NODE_NAME = "modelops-node"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    service_account_key: Path
    service_account_pub: Path
    tokens_csv: Path
    admin_token: str
    node_token: str  # the kubelet: user system:node:<NODE_NAME>, group system:nodes
    proxy_token: str  # kube-proxy: user system:kube-proxy (bound to system:node-proxier)
    kubelet_client_cert: Path  # the API server's client certificate for kubelets
    kubelet_client_key: Path


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_pki(directory: Path) -> Pki:
    """Write a fresh CA, serving certificate, service-account keys and admin token."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    valid_until = now + dt.timedelta(days=3650)

    ca_key = _new_key()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("modelops-devcluster-ca"))
        .issuer_name(_name("modelops-devcluster-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(valid_until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    server_key = _new_key()
    alt_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
        x509.IPAddress(ipaddress.ip_address(NODE_API_ADDRESS)),
        *(
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ),
    ]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(valid_until)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    client_key = _new_key()
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(valid_until)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = _new_key()
    token = secrets.token_hex(16)

    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        apiserver_cert=directory / "apiserver.crt",
        apiserver_key=directory / "apiserver.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
        tokens_csv=directory / "tokens.csv",
        admin_token=token,
        node_token=secrets.token_hex(16),
        proxy_token=secrets.token_hex(16),
        kubelet_client_cert=directory / "kubelet-client.crt",
        kubelet_client_key=directory / "kubelet-client.key",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.ca_key, ca_key)
    pki.apiserver_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.apiserver_key, server_key)
    _write_key(pki.service_account_key, sa_key)
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    pki.kubelet_client_cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.kubelet_client_key, client_key)
    pki.tokens_csv.write_text(
        f'{token},{ADMIN_USER},admin-uid,"system:masters"\n'
        f'{pki.node_token},system:node:{NODE_NAME},node-uid,"system:nodes"\n'
        f"{pki.proxy_token},system:kube-proxy,kube-proxy-uid\n"
    )
    pki.tokens_csv.chmod(0o600)
    return pki
