"""Read TensorFlow checkpoints (tensor bundles) without TensorFlow.

A bundle ``PREFIX`` is ``PREFIX.index`` plus ``PREFIX.data-00000-of-0000N``.  The index is a LevelDB-style
SSTable: a 48-byte footer (metaindex and index block handles as varints, padding, magic
``0xdb4775248b80fb57``), blocks of prefix-compressed key/value entries with restart points, each block followed
by a 1-byte compression type (0 none, 1 snappy) and a masked CRC32C.  The entry with the empty key is a
``BundleHeaderProto``; every other key is a tensor name whose value is a ``BundleEntryProto`` (dtype, shape,
shard id, offset, size, masked crc32c) locating raw little-endian bytes in the data shard.

Only plain numeric tensors are supported (no partitioned/sliced variables, no strings), which is all the
official DPED checkpoints hold.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpedkit.errors import CheckpointError

log = logging.getLogger(__name__)

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
_MASK_DELTA = 0xA282EAD8

# tensorflow DataType enum -> numpy dtype (little-endian)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: ``dtype`` (TF enum), ``shape``, data ``shard``, byte ``offset``/``size``, ``crc32c``."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None


# --- protobuf wire format -------------------------------------------------------------------------------


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns ``(value, new_pos)``."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode a protobuf message into ``(field_number, wire_type, value)`` triples (value: int or bytes)."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos : pos + n]), pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf message")
        out.append((field, wire, value))
    return out


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    dtype = shard = offset = size = 0
    crc: int | None = None
    shape: list[int] = []
    for field, _, v in parse_fields(value):
        if field == 1:
            dtype = v
        elif field == 2:  # TensorShapeProto: dim(2) { size(1) }, unknown_rank(3)
            for f2, _, dim in parse_fields(v):
                if f2 == 2:
                    size_ = [d for f3, _, d in parse_fields(dim) if f3 == 1]
                    shape.append(size_[0] if size_ else 0)
        elif field == 3:
            shard = v
        elif field == 4:
            offset = v
        elif field == 5:
            size = v
        elif field == 6:
            crc = v
        elif field == 7:
            raise CheckpointError(f"tensor {name!r} is partitioned (slices); not supported")
    return TensorEntry(name, dtype, tuple(shape), shard, offset, size, crc)


# --- CRC32C (Castagnoli), table driven ------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TensorFlow/LevelDB masked CRC-32C: rotate right by 15 bits, add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- snappy (raw block format), only used if a table block is compressed -------------------------------


def snappy_decompress(buf: bytes) -> bytes:
    """Decompress one raw snappy block."""
    n, pos = read_varint(buf, 0)
    out = bytearray()
    while pos < len(buf):
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(buf[pos : pos + extra], "little")
                pos += extra
            length += 1
            out += buf[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length = 4 + ((tag >> 2) & 7)
            off = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        else:
            nbytes = 2 if kind == 2 else 4
            length = (tag >> 2) + 1
            off = int.from_bytes(buf[pos : pos + nbytes], "little")
            pos += nbytes
        if off == 0 or off > len(out):
            raise ValueError("bad snappy copy offset")
        for _ in range(length):  # copies may overlap
            out.append(out[-off])
    if len(out) != n:
        raise ValueError("snappy length mismatch")
    return bytes(out)


# --- SSTable --------------------------------------------------------------------------------------------


def _read_block(data: bytes, handle: tuple[int, int], verify: bool) -> bytes:
    offset, size = handle
    if offset + size + 5 > len(data):
        raise ValueError("block handle points past the end of the file")
    block = data[offset : offset + size]
    kind = data[offset + size]
    if verify:
        stored = struct.unpack_from("<I", data, offset + size + 1)[0]
        if masked_crc32c(data[offset : offset + size + 1]) != stored:
            raise ValueError(f"block at offset {offset}: CRC mismatch")
    if kind == 1:
        return snappy_decompress(block)
    if kind != 0:
        raise ValueError(f"unknown block compression type {kind}")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise ValueError("block too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    if end < 0:
        raise ValueError("bad restart count")
    entries: list[tuple[bytes, bytes]] = []
    pos, key = 0, b""
    while pos < end:
        shared, pos = read_varint(block, pos)
        non_shared, pos = read_varint(block, pos)
        vlen, pos = read_varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + vlen]))
        pos += vlen
    return entries


def _read_handle(buf: bytes, pos: int = 0) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return (offset, size), pos


def read_sstable(data: bytes, *, verify: bool = True) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of an SSTable held in ``data``, in key order.

    Raises:
        ValueError: not an SSTable, or damaged (bad magic, handle out of range, CRC mismatch).
    """
    if len(data) < FOOTER_SIZE:
        raise ValueError("file too short for an SSTable footer")
    footer = data[-FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise ValueError("bad SSTable magic number (not a TensorFlow checkpoint index)")
    _, pos = _read_handle(footer)  # metaindex: unused
    index_handle, _ = _read_handle(footer, pos)
    entries: list[tuple[bytes, bytes]] = []
    for _, handle_bytes in _block_entries(_read_block(data, index_handle, verify)):
        handle, _ = _read_handle(handle_bytes)
        entries += _block_entries(_read_block(data, handle, verify))
    return entries


# --- bundle ---------------------------------------------------------------------------------------------


def bundle_prefix(path: str | Path) -> Path | None:
    """The bundle prefix for ``path``, or None if there is none.

    ``path`` may be the prefix, its ``*.index`` or ``*.data-*`` file, or a folder holding exactly one ``*.index``.
    """
    p = Path(path)
    if p.is_dir():
        indexes = sorted(p.glob("*.index"))
        return indexes[0].with_suffix("") if len(indexes) == 1 else None
    s = str(p)
    if s.endswith(".index"):
        s = s[: -len(".index")]
    elif ".data-" in p.name:
        s = s[: s.rindex(".data-")]
    prefix = Path(s)
    return prefix if Path(s + ".index").is_file() else None


class TFBundle:
    """A TensorFlow checkpoint opened for reading.

    Args:
        prefix: the checkpoint prefix (``.../iphone_orig``), or its ``.index`` file.
        verify: check block and tensor CRC32Cs (pure Python, about 0.5 s per MB of tensors).

    Raises:
        CheckpointError: missing files, not a tensor bundle, or damaged.

    Example:
        >>> b = TFBundle("shared/models/dped_orig/iphone_orig")  # doctest: +SKIP
        >>> b.read("generator/W1").shape  # doctest: +SKIP
        (9, 9, 3, 64)
    """

    def __init__(self, prefix: str | Path, *, verify: bool = True) -> None:
        found = bundle_prefix(prefix)
        if found is None:
            raise CheckpointError(f"{prefix}: no TensorFlow checkpoint here (expected {prefix}.index)")
        self.prefix = found
        self.verify = verify
        index = Path(str(found) + ".index")
        try:
            records = read_sstable(index.read_bytes(), verify=verify)
            self.num_shards = 1
            self.entries: dict[str, TensorEntry] = {}
            for key, value in records:
                if key == b"":
                    header = {f: v for f, _, v in parse_fields(value)}
                    self.num_shards = int(header.get(1, 1))
                    if header.get(2, 0) != 0:
                        raise CheckpointError(f"{index}: big-endian checkpoints are not supported")
                else:
                    name = key.decode()
                    self.entries[name] = _parse_entry(name, value)
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{index}: not a readable TensorFlow checkpoint index ({exc})") from exc
        self._sizes: dict[int, int] = {}

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self.entries)

    def _shard_path(self, i: int) -> Path:
        """The data file of shard ``i`` (checked to exist; its size remembered)."""
        path = Path(f"{self.prefix}.data-{i:05d}-of-{self.num_shards:05d}")
        if i not in self._sizes:
            if not path.is_file():
                raise CheckpointError(f"{path}: data shard of the checkpoint is missing")
            self._sizes[i] = path.stat().st_size
        return path

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a numpy array of its stored dtype and shape (TF layout, e.g. HWIO kernels).

        Raises:
            CheckpointError: unknown name, unsupported dtype, truncated shard or CRC mismatch.
        """
        if name not in self.entries:
            raise CheckpointError(f"{self.prefix}: no tensor {name!r} (has {len(self.entries)} tensors)")
        e = self.entries[name]
        if e.dtype not in DTYPES:
            raise CheckpointError(f"{self.prefix}: tensor {name!r} has unsupported TF dtype {e.dtype}")
        dtype = DTYPES[e.dtype]
        path = self._shard_path(e.shard)
        count = math.prod(e.shape)  # Python ints: a crafted shape cannot overflow to a small size
        if any(d < 0 for d in e.shape) or e.size != count * dtype.itemsize or e.offset + e.size > self._sizes[e.shard]:
            raise CheckpointError(
                f"{self.prefix}: tensor {name!r} is truncated or inconsistent with its shape {list(e.shape)}"
            )
        with open(path, "rb") as f:  # only this tensor's bytes: a huge (or sparse) data file is never read whole
            f.seek(e.offset)
            raw = f.read(e.size)
        if self.verify and e.crc32c is not None and masked_crc32c(raw) != e.crc32c:
            raise CheckpointError(f"{self.prefix}: tensor {name!r} fails its CRC check (damaged file)")
        return np.frombuffer(raw, dtype=dtype).reshape(e.shape).astype(dtype.newbyteorder("="))

    def read_all(self) -> dict[str, np.ndarray]:
        """Every tensor, by name."""
        return {n: self.read(n) for n in self.names()}
