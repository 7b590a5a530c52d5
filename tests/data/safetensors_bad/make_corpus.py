#!/usr/bin/env python3
"""Writes the malformed safetensors files next to this script.

Each file is a valid two-tensor file with exactly one defect, so a reader that
rejects it rejects it for that defect. test_safetensors.c names the error code
and message it expects for every file. Run: python3 make_corpus.py (Python 3
standard library only; the output is deterministic).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def header(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def container(header_bytes, data=b"", length=None):
    """u64-LE length, header bytes, data; `length` overrides the stored length."""
    n = len(header_bytes) if length is None else length
    return struct.pack("<Q", n) + header_bytes + data


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def valid_header(**changes):
    """Two F32 tensors a [2] at [0,8) and b [2] at [8,16); `changes` replace fields."""
    a, b = entry(offsets=(0, 8)), entry(offsets=(8, 16))
    a.update(changes)
    return {"__metadata__": {"format": "pt"}, "a": a, "b": b}


DATA = bytes(range(16))
FILES = {
    # sizes and lengths
    "empty": b"",
    "truncated_length": b"\x10\x00\x00\x00\x00",
    "header_past_end": container(header(valid_header()), DATA, length=4096),
    "huge_header_length": container(header(valid_header()), DATA, length=(1 << 64) - 1),
    "zero_header_length": container(b"", DATA),
    "truncated_data": container(header(valid_header()), DATA[:12]),
    # the JSON text
    "not_json": container(b"this is not json", DATA),
    "truncated_json": container(header(valid_header())[:40], DATA),
    "json_array": container(b"[1,2,3]", DATA),
    "json_string": container(b'"a string"', DATA),
    "trailing_bytes": container(header(valid_header()) + b" xyz", DATA),
    "invalid_utf8": container(b'{"a\xff":' + header(entry()) + b"}", DATA),
    "nul_in_header": container(b'{"a":' + header(entry()) + b"}\x00   ", DATA),
    "deep_nesting": container(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", DATA),
    # entries
    "entry_not_object": container(header({"a": 5}), DATA),
    "missing_dtype": container(header({"a": {"shape": [2], "data_offsets": [0, 8]}}), DATA),
    "dtype_not_string": container(header(valid_header(dtype=7)), DATA),
    "unknown_dtype": container(header(valid_header(dtype="F17")), DATA),
    "unsupported_dtype": container(header(valid_header(dtype="F64", shape=[1])), DATA),
    "missing_shape": container(header({"a": {"dtype": "F32", "data_offsets": [0, 8]}}), DATA),
    "shape_not_array": container(header(valid_header(shape=2)), DATA),
    "negative_dim": container(header(valid_header(shape=[-2])), DATA),
    "fractional_dim": container(header(valid_header(shape=[2.5])), DATA),
    "five_dims": container(header(valid_header(shape=[1, 1, 1, 1, 2])), DATA),
    "shape_overflow": container(header(valid_header(shape=[1 << 40, 1 << 40])), DATA),
    "bytes_overflow": container(header(valid_header(dtype="I64", shape=[1 << 31, 1 << 31])), DATA),
    "size_mismatch": container(header(valid_header(dtype="F16", shape=[3, 4], data_offsets=[0, 20])), bytes(36)),
    "missing_offsets": container(header({"a": {"dtype": "F32", "shape": [2]}}), DATA),
    "offsets_three_values": container(header(valid_header(data_offsets=[0, 4, 8])), DATA),
    "offsets_negative": container(header(valid_header(data_offsets=[-8, 0])), DATA),
    "offsets_too_large": container(header(valid_header(data_offsets=[0, 1 << 60])), DATA),
    "offsets_reversed": container(header(valid_header(data_offsets=[8, 0])), DATA),
    "offsets_past_data": container(header(valid_header(data_offsets=[16, 24])), DATA),
    "overlapping_offsets": container(header(valid_header(data_offsets=[4, 12])), DATA),
    "duplicate_tensor": container(b'{"a":' + header(entry()) + b',"a":' + header(entry(offsets=(8, 16))) + b"}",
                                  DATA),
    # __metadata__
    "metadata_not_object": container(header({"__metadata__": ["pt"], "a": entry()}), DATA),
    "metadata_value_not_string": container(header({"__metadata__": {"epoch": 3}, "a": entry()}), DATA),
    "duplicate_metadata": container(b'{"__metadata__":{},"__metadata__":{},"a":' + header(entry()) + b"}", DATA),
}


def main():
    for name, blob in FILES.items():
        with open(os.path.join(HERE, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print("wrote %d files to %s" % (len(FILES), HERE))


if __name__ == "__main__":
    main()
