"""Certificates and keys for the local control plane, made with the ``cryptography`` package.

One self-signed CA signs the kube-apiserver serving certificate and the client certificates
of each component. Client identities follow Kubernetes' bootstrap RBAC: the admin is in
group ``system:masters``; the controller manager and scheduler use the user names that the
built-in ClusterRoleBindings grant (``system:kube-controller-manager``,
``system:kube-scheduler``). A separate RSA key signs service-account tokens.

The aggregation layer has its own trust chain, as Kubernetes requires: a front-proxy CA
signs the client certificate (CN ``front-proxy-client``) with which the kube-apiserver
proxies requests to an extension API server (prometheus-adapter, KEDA's metrics server),
passing the caller's identity in ``X-Remote-*`` headers; the extension server trusts those
headers only from a client whose certificate that CA signed. Extension servers' serving
certificates (``issue_serving``) come from the main CA, which the APIService's caBundle
names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
# The CN the kube-apiserver's proxy client certificate carries (--requestheader-allowed-names).
FRONT_PROXY_CLIENT = "front-proxy-client"
# Names a pod or client may use to reach the apiserver; 10.0.0.1 is the first address of
# the service range the apiserver is started with (the `kubernetes` Service).
_SERVING_DNS = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"]
_SERVING_IPS = ["127.0.0.1", "10.0.0.1"]


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate subject: CN is the user name, O entries the groups."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


CLIENTS = (
    ClientIdentity("admin", "kubernetes-admin", ("system:masters",)),
    ClientIdentity("controller-manager", "system:kube-controller-manager"),
    ClientIdentity("scheduler", "system:kube-scheduler"),
    # The operator authenticates as its ServiceAccount's user name, so the ClusterRole that
    # the Helm chart and manifests bind to that ServiceAccount is what the e2e tests exercise.
    ClientIdentity("operator", "system:serviceaccount:deepseek-operator-system:deepseek-operator",
                   ("system:serviceaccounts", "system:serviceaccounts:deepseek-operator-system")),
)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool,
          extensions: list[x509.ExtensionType]) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALIDITY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write_ca(directory: Path, stem: str,
              common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    """Write a self-signed CA as ``<stem>.{crt,key}``; returns its key and name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = _cert(name, name, key.public_key(), key, ca=True,
                 extensions=[x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                           crl_sign=True, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False,
                                           decipher_only=False)])
    (directory / f"{stem}.key").write_bytes(_pem_key(key))
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, name


def write_pki(directory: Path) -> None:
    """Write ca.{crt,key}, apiserver.{crt,key}, <client>.{crt,key}, sa.{key,pub} and the
    front-proxy CA and client pair (front-proxy-ca.*, front-proxy-client.*) to directory.

    Existing files are left alone, so a restart keeps the same identities.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.crt").exists():
        return
    ca_key, ca_name = _write_ca(directory, "ca", "deepseek-operator-e2e-ca")

    def issue(stem: str, subject: x509.Name, usage: x509.ObjectIdentifier,
              san: x509.SubjectAlternativeName | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        extensions: list[x509.ExtensionType] = [x509.ExtendedKeyUsage([usage])]
        if san is not None:
            extensions.append(san)
        cert = _cert(subject, ca_name, key.public_key(), ca_key, ca=False, extensions=extensions)
        (directory / f"{stem}.key").write_bytes(_pem_key(key))
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in _SERVING_DNS]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _SERVING_IPS])
    issue("apiserver", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
          ExtendedKeyUsageOID.SERVER_AUTH, san)
    for client in CLIENTS:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in client.groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, client.user))
        issue(client.file_stem, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH)

    _write_front_proxy(directory)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "sa.key").write_bytes(_pem_key(sa_key))
    (directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def issue_client(directory: Path, identity: ClientIdentity) -> None:
    """Write ``<file_stem>.{crt,key}`` for another client identity, signed by the CA that
    ``write_pki`` made in ``directory`` (e.g. a second operator replica with the operator's
    user name and one more group, so the audit log tells the replicas apart)."""
    ca_key, ca_name = _ca_signer(directory, "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
    cert = _cert(x509.Name(attrs), ca_name, key.public_key(), ca_key, ca=False,
                 extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])
    (directory / f"{identity.file_stem}.key").write_bytes(_pem_key(key))
    (directory / f"{identity.file_stem}.crt").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM))


def _ca_signer(directory: Path, stem: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    name = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes()).subject
    return key, name


def _write_front_proxy(directory: Path) -> None:
    """front-proxy-ca.{crt,key} and front-proxy-client.{crt,key} (the aggregation layer)."""
    ca_key, ca_name = _write_ca(directory, "front-proxy-ca",
                                "deepseek-operator-e2e-front-proxy-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FRONT_PROXY_CLIENT)])
    cert = _cert(subject, ca_name, key.public_key(), ca_key, ca=False,
                 extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])
    (directory / "front-proxy-client.key").write_bytes(_pem_key(key))
    (directory / "front-proxy-client.crt").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM))


def issue_serving(directory: Path, stem: str, dns_names: list[str],
                  ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """Write ``<stem>.{crt,key}``: a serving certificate for ``dns_names`` (and ``ips``)
    signed by the main CA of ``write_pki``; returns (certificate path, key path).

    For servers the kube-apiserver calls: an APIService's backend is verified against
    ``<service>.<namespace>.svc``, a webhook called by URL against the URL's host.
    """
    ca_key, ca_name = _ca_signer(directory, "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in dns_names]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    cert = _cert(subject, ca_name, key.public_key(), ca_key, ca=False,
                 extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), san])
    (directory / f"{stem}.key").write_bytes(_pem_key(key))
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / f"{stem}.crt", directory / f"{stem}.key"
