"""Record signatures: what verifies, what does not, and keys that are not what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.remote.trust import Signer, Verifier, generate_keypair

BODY = {"schema": 1, "record": {"key": "ab" * 32, "outputs": {"model": {"digest": "cd" * 32}}}, "objects": {}}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Signer, Verifier, Signer]:
    generate_keypair(tmp_path / "a.pem", tmp_path / "a.pub")
    generate_keypair(tmp_path / "b.pem", tmp_path / "b.pub")
    assert (tmp_path / "a.pem").stat().st_mode & 0o077 == 0, "the private key is readable by its owner only"
    return Signer.load(tmp_path / "a.pem"), Verifier.load([tmp_path / "a.pub"]), Signer.load(tmp_path / "b.pem")


def test_a_signature_verifies_only_the_exact_body_it_signed(keys: tuple[Signer, Verifier, Signer]) -> None:
    signer, verifier, _ = keys
    signature = signer.sign(BODY)
    assert verifier.problem(BODY, signature) is None
    changed = {**BODY, "record": {**BODY["record"], "outputs": {"model": {"digest": "ef" * 32}}}}
    assert verifier.problem(changed, signature) == "its signature does not match its contents"
    assert verifier.problem(BODY, None) == "unsigned"
    assert verifier.problem(BODY, {**signature, "value": "!!notbase64"}) == "its signature does not match its contents"


def test_a_signature_by_another_key_is_untrusted(keys: tuple[Signer, Verifier, Signer]) -> None:
    _, verifier, other = keys
    problem = verifier.problem(BODY, other.sign(BODY))
    assert problem is not None and problem.startswith("signed by an untrusted key")


def test_bad_key_files_are_one_line_usage_errors(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(UsageError, match="missing.pub"):
        Verifier.load([tmp_path / "missing.pub"])
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(UsageError, match="junk.pem: not a PEM private key"):
        Signer.load(tmp_path / "junk.pem")
    (tmp_path / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(UsageError, match="not an unencrypted PEM private key"):
        Signer.load(tmp_path / "bad.pem").ready()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pub").write_bytes(
        ec_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(UsageError, match="not an Ed25519 key"):
        Verifier.load([tmp_path / "ec.pub"]).keys
