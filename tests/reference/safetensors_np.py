"""safetensors_np.py: a tiny reader/writer of the safetensors format with numpy only.

Format: 8-byte little-endian header length N, then N bytes of JSON
{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
(offsets relative to the start of the data section), then the data, little-endian, row-major.
The writer pads the header with spaces to a multiple of 8 bytes and lays the tensors out in the
order given, back to back, so the output is deterministic.
Supported dtypes: F32, F16, BF16 (read: upcast to float32; write: round to nearest even), I32, I64.
"""
import json
import struct

import numpy as np

_NP_OF = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
          "BF16": np.dtype("<u2")}
_ST_OF = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int32"): "I32",
          np.dtype("int64"): "I64"}


def bf16_to_f32(u16):
    """BF16 bit patterns (uint16) -> float32 (exact)."""
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """float32 -> BF16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def load(path, with_metadata=False):
    """Returns {name: numpy array} (BF16 upcast to float32), and the metadata dict if asked."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _NP_OF:
            raise ValueError(f"{path}: tensor '{name}': unsupported dtype {dt}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * _NP_OF[dt].itemsize or end > len(data):
            raise ValueError(f"{path}: tensor '{name}': data_offsets {begin}..{end} do not match shape {shape}")
        arr = np.frombuffer(data[begin:end], dtype=_NP_OF[dt]).reshape(shape)
        out[name] = bf16_to_f32(arr) if dt == "BF16" else arr.astype(arr.dtype.newbyteorder("="))
    return (out, meta) if with_metadata else out


def save(path, tensors, metadata=None, bf16=()):
    """Writes {name: array} in the given order. Names listed in bf16 are stored as BF16 (from float32).

    metadata: optional {str: str}, written as "__metadata__"."""
    header, chunks, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        if name in bf16:
            dt, buf = "BF16", f32_to_bf16(arr.astype(np.float32)).astype("<u2").tobytes()
        else:
            if arr.dtype not in _ST_OF:
                raise ValueError(f"tensor '{name}': unsupported dtype {arr.dtype}")
            dt = _ST_OF[arr.dtype]
            buf = np.ascontiguousarray(arr).astype(_NP_OF[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(buf)]}
        chunks.append(buf)
        off += len(buf)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for c in chunks:
            f.write(c)
