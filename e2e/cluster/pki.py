"""Certificates and keys for the local control plane, made with the ``cryptography`` package.

One self-signed CA signs the kube-apiserver serving certificate and the client certificates
of each component. Client identities follow Kubernetes' bootstrap RBAC: the admin is in
group ``system:masters``; the controller manager and scheduler use the user names that the
built-in ClusterRoleBindings grant (``system:kube-controller-manager``,
``system:kube-scheduler``). A separate RSA key signs service-account tokens.
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


def write_pki(directory: Path) -> None:
    """Write ca.{crt,key}, apiserver.{crt,key}, <client>.{crt,key}, sa.{key,pub} to directory.

    Existing files are left alone, so a restart keeps the same identities.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.crt").exists():
        return
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deepseek-operator-e2e-ca")])
    ca_cert = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True,
                    extensions=[x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                              crl_sign=True, content_commitment=False,
                                              key_encipherment=False, data_encipherment=False,
                                              key_agreement=False, encipher_only=False,
                                              decipher_only=False)])
    (directory / "ca.key").write_bytes(_pem_key(ca_key))
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

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

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "sa.key").write_bytes(_pem_key(sa_key))
    (directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def issue_client(directory: Path, identity: ClientIdentity) -> None:
    """Write ``<file_stem>.{crt,key}`` for another client identity, signed by the CA that
    ``write_pki`` made in ``directory`` (e.g. a second operator replica with the operator's
    user name and one more group, so the audit log tells the replicas apart)."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_name = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes()).subject
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
    cert = _cert(x509.Name(attrs), ca_name, key.public_key(), ca_key, ca=False,
                 extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])
    (directory / f"{identity.file_stem}.key").write_bytes(_pem_key(key))
    (directory / f"{identity.file_stem}.crt").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM))
