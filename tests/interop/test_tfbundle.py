"""The TensorFlow checkpoint reader: protobuf varints, CRC32C, snappy, the index file."""

import pytest

from dpedkit.errors import CheckpointError
from dpedkit.interop.tfbundle import (
    TFBundle,
    bundle_prefix,
    crc32c,
    masked_crc32c,
    parse_fields,
    read_varint,
    snappy_decompress,
)


def test_protobuf_and_crc_primitives():
    assert read_varint(bytes([0xAC, 0x02]), 0) == (300, 2)
    assert parse_fields(bytes([0x08, 0x96, 0x01, 0x12, 0x02, 0x08, 0x03])) == [(1, 0, 150), (2, 2, b"\x08\x03")]
    assert crc32c(b"123456789") == 0xE3069283
    assert masked_crc32c(b"") == 0xA282EAD8
    # literal "abcd" then copy offset 4 length 4
    assert snappy_decompress(bytes([8, 3 << 2]) + b"abcd" + bytes([0x01, 4])) == b"abcdabcd"


def test_tf_index_errors(tmp_path):
    (tmp_path / "x.index").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="magic"):
        TFBundle(tmp_path / "x")
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint"):
        TFBundle(tmp_path / "y")


def test_snappy_long_literals_and_overlapping_copies():
    text = bytes(range(70))  # a literal longer than 60 bytes carries its length in one extra byte
    assert snappy_decompress(bytes([70, 60 << 2, 69]) + text) == text
    # one byte "a", then a copy of length 7 at offset 1: runs over what it copies (RLE)
    assert snappy_decompress(bytes([8, 0 << 2]) + b"a" + bytes([(7 - 4) << 2 | 0x01, 1])) == b"a" * 8


def test_bundle_prefix_accepts_the_prefix_or_its_files(tmp_path):
    (tmp_path / "m.index").write_bytes(b"")
    (tmp_path / "m.data-00000-of-00001").write_bytes(b"")
    want = tmp_path / "m"
    assert bundle_prefix(want) == want == bundle_prefix(tmp_path / "m.index")
    assert bundle_prefix(tmp_path / "m.data-00000-of-00001") == want
    assert bundle_prefix(tmp_path / "other") is None
    assert bundle_prefix(tmp_path) == want  # a folder holding exactly one index
