#!/usr/bin/env python3
"""Writes upstream.safetensors with the reference writer (the `safetensors`
package, tested with 0.8.0): every dtype kiln reads, a scalar, an empty
tensor, a 4-D tensor, names that need JSON escapes and metadata with escapes.
test_safetensors.c writes the same tensors with kiln_st_write and expects the
very same bytes, then reads this file and checks the values listed here.

The reference writer keeps metadata in a hash map, so its key order changes
from call to call; this keeps the first result whose order is the given one,
which is the order kiln writes.
"""
import ctypes
import json
import os
import struct

import safetensors

HERE = os.path.dirname(os.path.abspath(__file__))


def pack(fmt, values):
    return struct.pack("<%d%s" % (len(values), fmt), *values)


# name: (dtype, shape, raw little-endian bytes); the comments give the values
TENSORS = {
    "a.f32": ("F32", [2, 3], pack("f", [0.5, -1.25, 3.0, 1024.0, 65504.0, -0.0])),
    "s": ("F32", [], pack("f", [42.0])),
    "b.bf16": ("BF16", [4], pack("H", [0x3F80, 0xC000, 0x0000, 0x7F80])),  # 1, -2, 0, inf
    "c.f16": ("F16", [1, 2, 2, 1], pack("H", [0x3C00, 0xC000, 0x0001, 0x7BFF])),  # 1, -2, 2^-24, 65504
    "d.f8e4m3": ("F8_E4M3", [5], bytes([0x38, 0xB8, 0x01, 0x7E, 0x00])),  # 1, -1, 2^-9, 448, 0
    "e.f8e5m2": ("F8_E5M2", [3], bytes([0x3C, 0xC0, 0x7B])),  # 1, -2, 57344
    "f.i32": ("I32", [2], pack("i", [-7, 123456])),
    "g.i64": ("I64", [3], pack("q", [-5, 0, 1 << 40])),
    "h.u8": ("U8", [7], bytes([0, 1, 2, 3, 200, 254, 255])),
    "empty": ("F32", [0, 3], b""),
    "\u00fcn\u00ef": ("U8", [1], bytes([9])),
    'q"\\\n': ("F16", [1], pack("H", [0x3800])),  # 0.5
}
METADATA = {"format": "pt", "note": 'line1\nline2 "quoted" \\ \u00e9 \x01'}

TORCH_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F8_E4M3": "float8_e4m3fn",
               "F8_E5M2": "float8_e5m2", "I32": "int32", "I64": "int64", "U8": "uint8"}


def main():
    buffers, specs = [], {}
    for name, (dtype, shape, raw) in TENSORS.items():
        buf = ctypes.create_string_buffer(raw, len(raw) or 1)
        buffers.append(buf)
        specs[name] = safetensors.TensorSpec(dtype=TORCH_NAMES[dtype], shape=shape,
                                             data_ptr=ctypes.addressof(buf), data_len=len(raw))
    for _ in range(100):
        blob = safetensors.serialize(specs, METADATA)
        n = struct.unpack("<Q", blob[:8])[0]
        if list(json.loads(blob[8:8 + n])["__metadata__"]) == list(METADATA):
            break
    else:
        raise SystemExit("the writer never kept the metadata order")
    with open(os.path.join(HERE, "upstream.safetensors"), "wb") as f:
        f.write(blob)
    print("safetensors %s wrote %d bytes" % (safetensors.__version__, len(blob)))


if __name__ == "__main__":
    main()
