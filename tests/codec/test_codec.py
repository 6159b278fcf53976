"""The payload codec on its own: round trips, fresh nonces, rotation, and every way decoding must refuse."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from longjobs import CodecError, EncryptionCodec, UserError, codec_from_environ, new_key
from longjobs._codec import ENCODING, KEY_ID_METADATA, NONCE_SIZE, parse_keys
from workflows import JobState

KEY_A = new_key("a")
KEY_B = new_key("b")


def codec_of(setting: str) -> EncryptionCodec:
    return EncryptionCodec(parse_keys(setting))


def json_payload(text: str = "secret value") -> Payload:
    payload: Payload = pydantic_data_converter.payload_converter.to_payload({"note": text})
    return payload


async def test_round_trip_restores_the_exact_payload() -> None:
    codec = codec_of(KEY_A)
    original = [json_payload("one"), json_payload("two"), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(original)
    assert all(p.metadata["encoding"] == ENCODING and p.metadata[KEY_ID_METADATA] == b"a" for p in encoded)
    assert all(b"one" not in p.data and b"two" not in p.data and b"note" not in p.data for p in encoded)
    assert await codec.decode(encoded) == original


async def test_round_trip_through_the_projects_converter() -> None:
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=codec_of(KEY_A))
    value = {"state": JobState.SUCCEEDED.value, "note": "n\u00e9e", "n": [1, 2.5, None]}
    encoded = await converter.encode([value])
    assert encoded[0].metadata["encoding"] == ENCODING
    assert await converter.decode(encoded, [dict]) == [value]


async def test_each_encoding_uses_a_fresh_nonce() -> None:
    codec = codec_of(KEY_A)
    payload = json_payload()
    first, second = await codec.encode([payload, payload])
    third, = await codec.encode([payload])
    datas = {first.data, second.data, third.data}
    assert len(datas) == 3
    assert len({d[:NONCE_SIZE] for d in datas}) == 3


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old_payloads = await codec_of(KEY_A).encode([json_payload("written under A")])
    rotated = codec_of(f"{KEY_B},{KEY_A}")
    assert rotated.active_key_id == "b" and rotated.key_ids == ["b", "a"]
    assert await rotated.decode(old_payloads) == [json_payload("written under A")]
    new_payloads = await rotated.encode([json_payload("written under B")])
    assert new_payloads[0].metadata[KEY_ID_METADATA] == b"b"
    # Once A is dropped, what A wrote is unreadable, and the error says which key is missing.
    with pytest.raises(CodecError, match="key id 'a'"):
        await codec_of(KEY_B).decode(old_payloads)


async def test_unknown_key_id_names_the_id() -> None:
    encoded = await codec_of(KEY_A).encode([json_payload()])
    with pytest.raises(CodecError) as raised:
        await codec_of(KEY_B).decode(encoded)
    message = str(raised.value)
    assert "'a'" in message and "not among the configured keys (b)" in message
    assert KEY_A.split(":")[1] not in message and KEY_B.split(":")[1] not in message
    assert isinstance(raised.value, UserError)  # a command prints it as one line and exits 2


async def test_same_id_with_another_key_fails_authentication() -> None:
    encoded = await codec_of(KEY_A).encode([json_payload()])
    impostor = f"a:{KEY_B.split(':')[1]}"
    with pytest.raises(CodecError, match="authentication failed"):
        await codec_of(impostor).decode(encoded)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
async def test_tampered_ciphertext_is_refused(where: str) -> None:
    codec = codec_of(KEY_A)
    [encoded] = await codec.encode([json_payload()])
    data = bytearray(encoded.data)
    index = {"nonce": 0, "ciphertext": NONCE_SIZE + 2, "tag": len(data) - 1}[where]
    data[index] ^= 0x01
    tampered = Payload(metadata=dict(encoded.metadata), data=bytes(data))
    with pytest.raises(CodecError, match="authentication failed"):
        await codec.decode([tampered])


async def test_truncated_or_unlabelled_encrypted_payloads_are_refused() -> None:
    codec = codec_of(KEY_A)
    [encoded] = await codec.encode([json_payload()])
    with pytest.raises(CodecError, match="too short"):
        await codec.decode([Payload(metadata=dict(encoded.metadata), data=encoded.data[:20])])
    with pytest.raises(CodecError, match="no encryption-key-id"):
        await codec.decode([Payload(metadata={"encoding": ENCODING}, data=encoded.data)])


async def test_payloads_without_the_encrypted_encoding_pass_through() -> None:
    codec = codec_of(KEY_A)
    plain = [json_payload("written before the codec was on"), Payload(metadata={"encoding": b"binary/null"}),
             Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01")]
    assert await codec.decode(plain) == plain
    # A mixed batch (an old history continued by a worker with the codec) decodes too.
    [encrypted] = await codec.encode([json_payload("new")])
    assert await codec.decode([plain[0], encrypted]) == [plain[0], json_payload("new")]


def test_not_configured_is_none() -> None:
    assert codec_from_environ({}) is None
    assert codec_from_environ({"LONGJOBS_CODEC_KEYS": "  ", "OTHER": "x"}) is None


def test_keys_from_the_environment_and_from_a_file(tmp_path: Path) -> None:
    codec = codec_from_environ({"LONGJOBS_CODEC_KEYS": f" {KEY_B} , {KEY_A} "})
    assert codec is not None and codec.key_ids == ["b", "a"]
    keys_file = tmp_path / "codec-keys"
    keys_file.write_text(f"# newest first\n{KEY_B}\n{KEY_A},\n")
    codec = codec_from_environ({"LONGJOBS_CODEC_KEYS_FILE": str(keys_file)})
    assert codec is not None and codec.key_ids == ["b", "a"] and codec.active_key_id == "b"


def test_url_safe_base64_keys_are_accepted() -> None:
    key = bytes(range(200, 232))
    codec = codec_from_environ({"LONGJOBS_CODEC_KEYS": f"u:{base64.urlsafe_b64encode(key).decode()}"})
    assert codec is not None and codec.key_ids == ["u"]


def test_new_key_makes_a_usable_distinct_entry() -> None:
    first, second = new_key(), new_key()
    assert first != second
    for entry in (first, second):
        key_id, _, encoded = entry.partition(":")
        assert key_id and len(base64.b64decode(encoded, validate=True)) == 32
        assert codec_from_environ({"LONGJOBS_CODEC_KEYS": entry}) is not None
    with pytest.raises(CodecError, match="invalid key id"):
        new_key("no spaces")


SHORT = base64.b64encode(b"x" * 16).decode()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LONGJOBS_CODEC_KEYS": "justakey"}, "entry 1 is not id:base64key"),
        ({"LONGJOBS_CODEC_KEYS": f"{KEY_A},:abc"}, "entry 2 is not id:base64key"),
        ({"LONGJOBS_CODEC_KEYS": "a:not base64!"}, "the key for id 'a' is not valid base64"),
        ({"LONGJOBS_CODEC_KEYS": f"a:{SHORT}"}, "the key for id 'a' is 16 bytes; AES-256 needs 32"),
        ({"LONGJOBS_CODEC_KEYS": f"{KEY_A},{KEY_A}"}, "key id 'a' appears twice"),
        ({"LONGJOBS_CODEC_KEYS": f"bad id:{KEY_A.split(':')[1]}"}, "invalid key id 'bad id'"),
        ({"LONGJOBS_CODEC_KEYS": ",,"}, "holds no keys"),
        ({"LONGJOBS_CODEC_KEYS": KEY_A, "LONGJOBS_CODEC_KEYS_FILE": "/x"}, "set only one of"),
        ({"LONGJOBS_CODEC_KEYS_FILE": "/nonexistent/codec-keys"}, "cannot read LONGJOBS_CODEC_KEYS_FILE"),
    ],
)
def test_malformed_settings_are_one_line_user_errors(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(UserError) as raised:
        codec_from_environ(environ)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert KEY_A.split(":")[1] not in message  # never echo key material


def test_empty_key_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n")
    with pytest.raises(UserError, match="holds no keys"):
        codec_from_environ({"LONGJOBS_CODEC_KEYS_FILE": str(empty)})


def test_constructor_checks_programmatic_keys() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        EncryptionCodec([])
    with pytest.raises(ValueError, match="AES-256 needs 32"):
        EncryptionCodec([("a", b"short")])
