"""Ed25519 signatures over bundle manifests, so a device can tell a bundle it should run.

The manifest lists every file of a bundle by sha256 and loading checks each one, so a signature
over the manifest's exact bytes covers the whole bundle: whoever can write the files cannot make a
trusted device load them without the private key. The signature lives beside the manifest in
``manifest.sig`` (JSON: algorithm, key id, base64 signature); the signed message is a fixed domain
prefix followed by the manifest bytes, so a signature made for anything else never verifies here.

Keys are PEM files made by :func:`generate_key_pair` (PKCS#8 private key, mode 0600, and
``<key>.pub``, the SubjectPublicKeyInfo a device is given with ``--trust``). Keys never belong in
the repository.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgemoe.core.errors import BundleError, ConfigError

SIGNATURE = "manifest.sig"
SIGNATURE_FORMAT = "edgemoe-signature/1"
DOMAIN = b"edgemoe bundle manifest v1\x00"
SIGN = "sign it with 'edgemoe sign BUNDLE --key KEY'"


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(private_path: Path) -> Path:
    """Write a new private key to ``private_path`` (created, never overwritten, mode 0600) and its
    public key to ``<private_path>.pub``; return the public key's path."""
    private_path = Path(private_path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} exists; keys are never overwritten (choose another path)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path


def _read_key(path: Path, private: bool) -> Ed25519PrivateKey | Ed25519PublicKey:
    what = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} key {path}: cannot read it ({exc.strerror})") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} key {path}: not a PEM {what} key ({exc})") from None
    wanted = Ed25519PrivateKey if private else Ed25519PublicKey
    if not isinstance(key, wanted):
        raise ConfigError(f"{what} key {path}: a {type(key).__name__}, not an Ed25519 key")
    return key


def sign_manifest(directory: Path, private_key: Path, body: bytes) -> str:
    """Sign ``body``, the bytes of ``directory/manifest.json``; write ``manifest.sig``; return the
    key id. Callers check the bundle's files against those bytes first (``edgemoe sign`` does), so
    a signature never vouches for a bundle that is already broken."""
    key = _read_key(private_key, private=True)
    assert isinstance(key, Ed25519PrivateKey)
    record = {"format": SIGNATURE_FORMAT, "algorithm": "ed25519", "key_id": key_id(key.public_key()),
              "signature": base64.b64encode(key.sign(DOMAIN + body)).decode()}
    tmp = Path(directory) / f".{SIGNATURE}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, Path(directory) / SIGNATURE)
    return str(record["key_id"])


@dataclass(frozen=True)
class TrustedKey:
    """The public key a device trusts; :meth:`verify` refuses whatever it did not sign."""

    path: Path
    key: Ed25519PublicKey

    @classmethod
    def load(cls, path: Path) -> TrustedKey:
        key = _read_key(path, private=False)
        assert isinstance(key, Ed25519PublicKey)
        return cls(Path(path), key)

    @property
    def id(self) -> str:
        return key_id(self.key)

    def verify(self, directory: Path, manifest_bytes: bytes) -> None:
        """Refuse, in one line, a bundle whose ``manifest_bytes`` this key did not sign."""
        path = Path(directory) / SIGNATURE
        if not path.is_file():
            raise BundleError(f"{directory}: not signed (no {SIGNATURE}) but --trust {self.path} requires a "
                              f"signature by key {self.id}; {SIGN}")
        try:
            record = json.loads(path.read_text())
            signature = base64.b64decode(record["signature"], validate=True)
            signer = str(record.get("key_id", "?"))
        except (ValueError, KeyError, TypeError):
            raise BundleError(f"{path}: not a {SIGNATURE_FORMAT} record; {SIGN}") from None
        try:
            self.key.verify(signature, DOMAIN + manifest_bytes)
        except InvalidSignature:
            why = ("the manifest was changed after it was signed" if signer == self.id
                   else f"it was signed by key {signer}, not by the trusted key {self.id}")
            raise BundleError(f"{directory}: signature does not verify: {why}; refusing the bundle") from None
