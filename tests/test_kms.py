"""AwsKms against a real moto server: encryption context, ReEncrypt, key forms, failures.

moto's limits (tests/servers.py, docs/keyproviders.md): its key rotation is bookkeeping only
and disabled keys still work there, so the disabled-key refusal (DisabledException ->
KeyProviderError) is not tested here; it does enforce the EncryptionContext on Decrypt and
ReEncrypt and the KeyId named on Decrypt.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from sealed_results.errors import ConfigError, IntegrityError, KeyProviderError  # noqa: E402
from sealed_results.format import Stanza  # noqa: E402
from sealed_results.keyproviders import as_materials  # noqa: E402
from sealed_results.keyproviders.kms import CONTEXT_KEY, AwsKms  # noqa: E402
from tests.servers import MotoServer, _free_port  # noqa: E402


@dataclass
class Kms:
    endpoint_url: str
    client: Any
    key_id: str
    arn: str
    alias: str

    def provider(self, key: str | None = None, **options: Any) -> AwsKms:
        return AwsKms(key or self.arn, endpoint_url=self.endpoint_url, **options)


@pytest.fixture
def kms(moto_reset: MotoServer, leak_scan: Any) -> Kms:
    client = boto3.client("kms", endpoint_url=moto_reset.endpoint_url)
    meta = client.create_key(Description="sealed-results test")["KeyMetadata"]
    alias = f"alias/results-{meta['KeyId'][:8]}"
    client.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    leak_scan.add_secret(moto_reset.endpoint_url, meta["KeyId"], meta["Arn"], alias)
    return Kms(moto_reset.endpoint_url, client, meta["KeyId"], meta["Arn"], alias)


@pytest.mark.parametrize("form", ["key id", "arn", "alias", "alias arn"])
def test_every_key_form_round_trips(kms: Kms, form: str) -> None:
    alias_arn = kms.arn.split(":key/")[0] + ":" + kms.alias
    key = {"key id": kms.key_id, "arn": kms.arn, "alias": kms.alias, "alias arn": alias_arn}[form]
    provider = kms.provider(key, region_name="us-east-1")
    dk = as_materials(provider).new_data_key(10)
    assert dk.stanzas[0].kind == "aws-kms" and dk.stanzas[0].wrapped[:1] == b"\x01"
    assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_encryption_context_is_the_hex_key_id_and_is_enforced(kms: Kms) -> None:
    provider = kms.provider()
    dk = as_materials(provider).new_data_key(10)
    blob = dk.stanzas[0].wrapped[1:]
    context = {CONTEXT_KEY: dk.key_id.hex()}  # opaque hex, never a path
    assert kms.client.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == (
        dk.plaintext
    )
    with pytest.raises(kms.client.exceptions.InvalidCiphertextException):
        kms.client.decrypt(CiphertextBlob=blob)
    with pytest.raises(IntegrityError) as info:
        provider.unwrap_data_key(dk.stanzas[0].wrapped, os.urandom(16))
    assert info.value.__cause__.response["Error"]["Code"] == "InvalidCiphertextException"


def test_reencrypt_rewraps_inside_kms_and_keeps_the_binding(kms: Kms) -> None:
    provider = kms.provider()
    dk = as_materials(provider).new_data_key(10)
    provider.rotate()
    rotations = kms.client.list_key_rotations(KeyId=kms.key_id)["Rotations"]
    assert len(rotations) == 1  # moto records it; there is no new key material to see
    rewrapped = as_materials(provider).rewrap_stanzas(dk.key_id, dk.stanzas)
    assert rewrapped[0].wrapped != dk.stanzas[0].wrapped
    assert as_materials(provider).open_data_key(dk.key_id, rewrapped) == dk.plaintext
    with pytest.raises(IntegrityError):  # ReEncrypt checks the source context too
        as_materials(provider).rewrap_stanzas(os.urandom(16), dk.stanzas)
    with pytest.raises(IntegrityError):
        as_materials(provider).open_data_key(os.urandom(16), rewrapped)


def test_rotate_resolves_an_alias(kms: Kms) -> None:
    kms.provider(kms.alias).rotate()  # RotateKeyOnDemand itself refuses aliases
    assert len(kms.client.list_key_rotations(KeyId=kms.key_id)["Rotations"]) == 1


def test_ciphertext_under_another_kms_key_is_refused(kms: Kms) -> None:
    other = kms.client.create_key()["KeyMetadata"]["Arn"]
    dk = as_materials(kms.provider(other)).new_data_key(10)
    with pytest.raises(IntegrityError):  # Decrypt names our key: no foreign key is accepted
        as_materials(kms.provider()).open_data_key(dk.key_id, dk.stanzas)


def test_second_provider_wraps_with_encrypt(kms: Kms) -> None:
    provider = kms.provider()
    key_id, data_key = os.urandom(16), os.urandom(32)
    stanza = Stanza("aws-kms", provider.wrap_data_key(data_key, key_id))
    assert as_materials(provider).open_data_key(key_id, (stanza,)) == data_key


def test_missing_key_is_a_provider_error(kms: Kms) -> None:
    with pytest.raises(KeyProviderError, match="not found") as info:
        as_materials(kms.provider("alias/does-not-exist")).new_data_key(10)
    assert "does-not-exist" not in str(info.value)


def test_unreachable_endpoint_fails_after_bounded_retries(leak_scan: Any) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    leak_scan.add_secret(url)
    provider = AwsKms("alias/results", endpoint_url=url, region_name="us-east-1", max_attempts=2)
    started = time.monotonic()
    with pytest.raises(KeyProviderError, match="unreachable") as info:
        as_materials(provider).new_data_key(10)
    assert time.monotonic() - started < 10
    assert url not in str(info.value)


def test_no_credentials_and_no_region(
    kms: Kms, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="region"):
        as_materials(kms.provider()).new_data_key(10)
    with pytest.raises(KeyProviderError, match="credentials"):
        as_materials(kms.provider(region_name="us-east-1", max_attempts=1)).new_data_key(10)
    with pytest.raises(ConfigError, match="profile"):
        as_materials(kms.provider(profile_name="nobody")).new_data_key(10)


def test_profile_from_the_shared_files_and_pickles_without_credentials(
    kms: Kms, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "profile-secret-" + os.urandom(6).hex()
    (tmp_path / "credentials").write_text(
        f"[sr-test]\naws_access_key_id = testing\naws_secret_access_key = {secret}\n"
    )
    (tmp_path / "config").write_text("[profile sr-test]\nregion = us-east-1\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    provider = kms.provider(profile_name="sr-test")
    dk = as_materials(provider).new_data_key(10)
    data = pickle.dumps(provider)
    assert secret.encode() not in data and b"testing" not in data
    assert as_materials(pickle.loads(data)).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_bad_settings_are_config_errors(leak_scan: Any) -> None:
    with pytest.raises(ConfigError):
        AwsKms("")
    with pytest.raises(ConfigError):
        AwsKms("alias/x", max_attempts=0)
    leak_scan.add_secret("kms endpoint")
    with pytest.raises(ConfigError, match="endpoint_url"):  # botocore's ValueError quotes it
        as_materials(
            AwsKms("alias/x", endpoint_url="kms endpoint", region_name="us-east-1")
        ).new_data_key(1)


NOT_OURS = "The ciphertext refers to a customer master key that does not exist"
IAM_DENIAL = "User: arn:aws:sts::1:assumed-role/r is not authorized to perform: kms:Decrypt"


@pytest.mark.parametrize(
    ("code", "message", "stored", "expected"),
    [
        ("InvalidCiphertextException", "", True, IntegrityError),
        ("IncorrectKeyException", "The key ID in the request does not...", True, IntegrityError),
        ("AccessDeniedException", NOT_OURS, True, IntegrityError),
        ("AccessDeniedException", IAM_DENIAL, True, KeyProviderError),
        ("AccessDeniedException", "", False, KeyProviderError),
        ("DisabledException", "arn:aws:kms:... is disabled.", True, KeyProviderError),
        (
            "KMSInvalidStateException",
            "arn:aws:kms:... is pending deletion.",
            True,
            KeyProviderError,
        ),
        ("ThrottlingException", "Rate exceeded", True, KeyProviderError),
    ],
)
def test_error_translation_follows_real_kms_answers(
    code: str, message: str, stored: bool, expected: type[Exception]
) -> None:
    # The real-KMS answers moto does not give (IAM denials, disabled keys), as KMS words them.
    from botocore.exceptions import ClientError

    from sealed_results.keyproviders.kms import _translate

    error = ClientError({"Error": {"Code": code, "Message": message}}, "Decrypt")
    translated = _translate(error, stored)
    assert type(translated) is expected
    assert "arn:" not in str(translated)
