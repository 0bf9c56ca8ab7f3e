"""Compact on-disk format for pruned models: sparse int8 encoder + fp16 rest.

A pruned ("baked") Hugging Face model has exact zeros in its targeted encoder
``nn.Linear`` weights.  :func:`export_compact` stores such a model in a single
file that is small enough to be interesting (the paper's PruneBERT reaches
about 2.2 bytes per kept encoder weight; this format aims at <= 1.6), and
:func:`load_compact` rebuilds a runnable model from it without the hub.

Quantization schemes (``quantization=`` of :func:`export_compact`), symmetric
int8 with zero point 0, the scale stored as float16:

* ``"per_row"`` (default, ``int8-sym-per-row-fp16scale``): one scale per
  output row of each targeted weight ``W`` of shape ``[out, in]`` (the
  per-channel scheme of dynamic quantization): ``amax = max_j |W[r, j]|``;
* ``"per_tensor"`` (``int8-sym-per-tensor-fp16scale``): one scale per matrix,
  ``amax = max |W|`` (the granularity of ``torch.ao.quantization.quantize_dynamic``'s
  default weight observer, and what PruneBERT's compact file used).  Rows whose
  weights are small use fewer of the 255 levels, so the values compress
  better (about 0.6 instead of 0.87 bytes per kept weight on MiniLM) at some
  cost in precision; kept weights below half a step round to 0.

In both, ``scale = float16(amax / 127)`` computed in float32 (a nonzero
``amax`` whose scale would underflow gets the smallest positive float16, a
scale above the float16 range gets the largest finite float16; an all-zero
row or matrix gets scale 0), then

* ``q = clamp(round_half_even(W / float32(scale)), -127, 127)`` as int8
  (pruned weights stay exactly 0);
* dequantized weight ``= float32(q) * float32(scale)``, cast back to the
  weight's original dtype.

Only entries with ``q != 0`` are stored: a kept weight so small that it rounds
to 0 is indistinguishable from a pruned one after quantization (the report
counts these as ``kept_weights_quantized_to_zero``).

File layout (all integers little endian)::

    b"MOVPRUNE"                      8-byte magic
    uint32 format_version            currently 1
    uint32 header_length
    header                           xz-compressed UTF-8 JSON (see below)
    sections                         concatenated, each an independent xz stream

The JSON header holds the model class name, the full ``config.json`` content,
the quantization scheme, the list of quantized matrices (name, shape, number
of stored entries, index encoding and its byte length, original dtype), the
list of other tensors (name, shape, original and stored dtype, part) and the
sections table (name, offset relative to the end of the header, compressed
and raw length).

Sections:

* ``index``  -- sparsity pattern of every quantized matrix, one after another.
  Each matrix uses whichever of two encodings compresses smaller:
  ``bitmap`` (``numpy.packbits`` of the row-major nonzero mask, MSB first) or
  ``gaps`` (for the row-major flat positions ``p_0 < p_1 < ...`` of stored
  entries, the gaps ``p_k - p_{k-1} - 1`` with ``p_{-1} = -1``, each written
  as ``gap // 255`` bytes 0xFF followed by one byte ``gap % 255``).
* ``values`` -- the int8 ``q`` of stored entries in row-major order.
* ``scales`` -- the float16 scales of every quantized matrix (one per row,
  or one per matrix with ``per_tensor``).
* ``embeddings``, ``encoder_other``, ``head`` -- every other state-dict entry
  (embeddings, biases, LayerNorm, pooler/classifier, buffers), raw bytes in
  header order.  Floating point tensors are stored as float16 (or float32 with
  ``other_dtype="float32"``; a tensor with values outside the float16 range is
  kept in its own dtype), integer/bool buffers as-is.  Tensors sharing storage
  (tied weights) are stored once.

Headline metric: ``bytes_per_kept_weight`` = compressed bytes of the
``index`` + ``values`` + ``scales`` sections divided by the number of nonzero
targeted weights of the exported model.  Embeddings dominate the total file
size and are reported separately (``parts``, ``file_bytes``).

:func:`quantize_model_weights` returns the float model that a compact file
represents (targeted weights dequantized, other floats rounded through the
stored dtype); :func:`load_compact` reproduces it exactly.
"""

from __future__ import annotations

import copy
import io
import json
import lzma
import re
import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "FORMAT_VERSION",
    "MAGIC",
    "QUANT_SCHEMES",
    "dequantize_rowwise",
    "export_compact",
    "default_targets",
    "find_target_linears",
    "load_compact",
    "quantize_model_weights",
    "quantize_rowwise",
    "quantize_weight",
    "read_quantized",
]

MAGIC = b"MOVPRUNE"
FORMAT_VERSION = 1
_COMMON_SCHEME = {
    "dtype": "int8",
    "qmin": -127,
    "qmax": 127,
    "zero_point": 0,
    "rounding": "round half to even of w / float32(scale), then clamp",
    "dequantize": "float32(q) * float32(scale), cast to the original dtype",
}
#: The quantization schemes, by the ``quantization=`` name of :func:`export_compact`.
QUANT_SCHEMES = {
    "per_row": {
        "name": "int8-sym-per-row-fp16scale",
        "granularity": "per output row (dim 0 of nn.Linear.weight)",
        "scale": "float16(max_abs_row / 127), computed in float32",
        **_COMMON_SCHEME,
    },
    "per_tensor": {
        "name": "int8-sym-per-tensor-fp16scale",
        "granularity": "per matrix",
        "scale": "float16(max_abs_matrix / 127), computed in float32",
        **_COMMON_SCHEME,
    },
}
_SCHEME_BY_NAME = {v["name"]: k for k, v in QUANT_SCHEMES.items()}

#: Fallback targets: the six encoder Linear layers of every BERT-family layer.
DEFAULT_TARGET_MODULES = (
    r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)"
    r"|attention\.output\.dense|intermediate\.dense|output\.dense)$",
)

_FP16_MAX = float(torch.finfo(torch.float16).max)
_FP16_TINY = 2.0**-24  # smallest positive (subnormal) float16
_PARTS = ("embeddings", "encoder_other", "head")
_HEADER = struct.Struct("<8sII")


# --------------------------------------------------------------------------
# target selection
# --------------------------------------------------------------------------
def default_targets(model: nn.Module) -> list[str]:
    """Default target regexes for ``model``: those of
    ``movprune.pruner.default_target_modules`` (per ``config.model_type``:
    BERT/RoBERTa/ELECTRA..., DistilBERT, MPNet), falling back to
    :data:`DEFAULT_TARGET_MODULES` for other model types."""
    from movprune.pruner import default_target_modules

    try:
        return list(default_target_modules(model))
    except ValueError:
        return list(DEFAULT_TARGET_MODULES)


def find_target_linears(
    model: nn.Module, target_modules: Sequence[str] | None = None
) -> dict[str, nn.Linear]:
    """Return ``{module_name: nn.Linear}`` for modules whose name matches one
    of the ``target_modules`` regexes (``re.search``; default:
    :func:`default_targets`), in ``named_modules`` order.

    Raises ``ValueError`` if a matched layer still carries a parametrization
    (e.g. movprune masks): call ``movprune.bake(model)`` first.
    """
    patterns = [re.compile(p) for p in (target_modules or default_targets(model))]
    found = {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and any(p.search(name) for p in patterns)
    }
    for name, mod in found.items():
        if parametrize.is_parametrized(mod):
            raise ValueError(
                f"{name} still has a parametrization (movprune mask?); "
                "call movprune.bake(model) to get a plain model with exact zeros first"
            )
    return found


# --------------------------------------------------------------------------
# quantization
# --------------------------------------------------------------------------
def _check_quantization(quantization: str) -> None:
    if quantization not in QUANT_SCHEMES:
        raise ValueError(
            f"quantization must be one of {sorted(QUANT_SCHEMES)}, got {quantization!r}"
        )


def quantize_weight(
    weight: torch.Tensor, quantization: str = "per_row"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a 2-D weight with one of :data:`QUANT_SCHEMES` (see the module
    docstring).

    Returns ``(q, scale)``: ``q`` int8 of the weight's shape, ``scale`` float16
    of shape ``[rows]`` (``"per_row"``) or ``[1]`` (``"per_tensor"``).  Zeros
    map to zeros.
    """
    _check_quantization(quantization)
    w = weight.detach().to(torch.float32)
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(w.shape)}")
    amax = w.abs().amax(dim=1) if quantization == "per_row" else w.abs().amax().reshape(1)
    scale32 = (amax / 127.0).clamp(max=_FP16_MAX)
    scale16 = scale32.to(torch.float16)
    scale16 = torch.where(
        (scale16 == 0) & (amax > 0), torch.tensor(_FP16_TINY, dtype=torch.float16), scale16
    )
    s = scale16.to(torch.float32)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(w / safe[:, None]).clamp_(-127, 127)
    q = torch.where(s[:, None] > 0, q, torch.zeros_like(q))
    return q.to(torch.int8), scale16


def quantize_rowwise(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize_weight` with the default ``"per_row"`` scheme."""
    return quantize_weight(weight, "per_row")


def dequantize_rowwise(
    q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Inverse of :func:`quantize_weight`: ``float32(q) * float32(scale)``
    (``scale`` of shape ``[rows]`` or ``[1]``)."""
    return (q.to(torch.float32) * scale.to(torch.float32)[:, None]).to(dtype)


def _stored_dtype(t: torch.Tensor, other_dtype: str) -> torch.dtype:
    """Dtype in which a non-quantized tensor is written to the file."""
    if not t.is_floating_point() or other_dtype == "float32":
        return t.dtype
    if t.dtype in (torch.float32, torch.float64, torch.bfloat16):
        finite_max = t.detach().abs().max().item() if t.numel() else 0.0
        if finite_max <= _FP16_MAX:
            return torch.float16
    return t.dtype


def _check_other_dtype(other_dtype: str) -> None:
    if other_dtype not in ("float16", "float32"):
        raise ValueError("other_dtype must be 'float16' or 'float32'")


@torch.no_grad()
def quantize_model_weights(
    model: nn.Module,
    target_modules: Sequence[str] | None = None,
    other_dtype: str = "float16",
    inplace: bool = False,
    quantization: str = "per_row",
) -> nn.Module:
    """Return the float model a compact file of ``model`` represents.

    Targeted weights become ``dequantize(quantize(W))`` with the
    ``quantization`` scheme (``"per_row"`` or ``"per_tensor"``); every other floating
    point parameter/buffer is rounded through the dtype it would be stored in
    (float16 by default).  ``load_compact(export_compact(model))`` computes
    exactly what this reference computes.  A deep copy is modified unless
    ``inplace=True``.
    """
    _check_other_dtype(other_dtype)
    _check_quantization(quantization)
    if not inplace:
        model = copy.deepcopy(model)
    targets = find_target_linears(model, target_modules)
    target_weights = {id(m.weight) for m in targets.values()}
    for mod in targets.values():
        q, s = quantize_weight(mod.weight, quantization)
        mod.weight.copy_(dequantize_rowwise(q, s, mod.weight.dtype))
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in target_weights or not t.is_floating_point():
            continue
        sd = _stored_dtype(t, other_dtype)
        if sd != t.dtype:
            t.copy_(t.to(sd).to(t.dtype))
    return model


# --------------------------------------------------------------------------
# sparse index encodings
# --------------------------------------------------------------------------
def _encode_gaps(positions: np.ndarray) -> bytes:
    """Flat positions (sorted) -> gap bytes with 0xFF escape."""
    gaps = np.diff(positions.astype(np.int64), prepend=-1) - 1
    n_escape = gaps // 255
    out = np.full(int(len(gaps) + n_escape.sum()), 255, dtype=np.uint8)
    ends = np.cumsum(n_escape + 1) - 1
    out[ends] = (gaps % 255).astype(np.uint8)
    return out.tobytes()


def _decode_gaps(buf: bytes, nnz: int) -> np.ndarray:
    """Gap bytes -> sorted flat positions (inverse of :func:`_encode_gaps`)."""
    b = np.frombuffer(buf, dtype=np.uint8).astype(np.int64)
    ends = np.flatnonzero(b != 255)
    if len(ends) != nnz or (nnz and ends[-1] != len(b) - 1) or (not nnz and len(b)):
        raise ValueError("corrupt gap-encoded sparse index")
    csum = np.cumsum(b)
    gaps = np.diff(csum[ends], prepend=0)  # 255 * n_escape + remainder
    return np.cumsum(gaps + 1) - 1


def _encode_bitmap(mask: np.ndarray) -> bytes:
    return np.packbits(mask.ravel()).tobytes()


def _decode_bitmap(buf: bytes, numel: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=numel)
    return np.flatnonzero(bits)


# --------------------------------------------------------------------------
# compression helpers
# --------------------------------------------------------------------------
def _xz(data: bytes, preset: int, word_bytes: int = 1) -> bytes:
    """xz-compress ``data``; ``word_bytes=2`` tunes LZMA2 for 16-bit words.

    The filter settings are recorded in the xz stream itself, so decoding
    needs no parameters."""
    if word_bytes == 2:
        filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "lc": 0, "lp": 1, "pb": 1}]
    else:
        filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "lc": 4, "lp": 0, "pb": 0}]
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)


def _unxz(data: bytes, what: str) -> bytes:
    try:
        return lzma.decompress(data, format=lzma.FORMAT_XZ)
    except lzma.LZMAError as exc:
        raise ValueError(f"corrupt movprune compact file ({what}): {exc}") from None


def _part_of(name: str) -> str:
    if re.search(r"(^|\.)embeddings\.", name):
        return "embeddings"
    if re.search(r"(^|\.)encoder\.", name):
        return "encoder_other"
    return "head"


_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
    )
}


def _dtype_name(d: torch.dtype) -> str:
    name = str(d).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {d}")
    return name


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: ship the raw bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def _tensor_from_bytes(buf: bytes, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.frombuffer(bytearray(buf), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
    if not buf:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(buf), dtype=dtype).reshape(shape)


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------
@torch.no_grad()
def export_compact(
    model: nn.Module,
    path: str | Path,
    target_modules: Sequence[str] | None = None,
    other_dtype: str = "float16",
    preset: int = 6,
    quantization: str = "per_row",
) -> dict:
    """Write ``model`` (a Hugging Face ``PreTrainedModel`` whose pruned
    weights are exact zeros) to ``path`` in the compact format.

    ``target_modules`` are regexes selecting the ``nn.Linear`` layers stored
    as sparse int8 (default: :func:`default_targets`, the encoder projections).
    ``other_dtype`` ("float16" or "float32") is the storage dtype of the
    remaining floating point tensors; ``preset`` the xz preset;
    ``quantization`` the int8 scheme, ``"per_row"`` (default, more precise) or
    ``"per_tensor"`` (smaller file; see the module docstring).  Returns a
    report dict: ``file_bytes``, ``encoder_bytes`` (index + values + scales
    sections), ``kept_weights`` (nonzero targeted weights), ``target_weights``,
    ``density``, ``bytes_per_kept_weight`` (= encoder_bytes / kept_weights),
    ``total_bytes_per_kept_weight``, ``parts`` / ``parts_raw`` (compressed /
    uncompressed bytes per section plus the header), ``index_encodings``,
    ``kept_weights_quantized_to_zero``, ``fp32_state_dict_bytes`` and
    ``quantization`` (the scheme's name).
    """
    _check_other_dtype(other_dtype)
    _check_quantization(quantization)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        raise TypeError("export_compact expects a Hugging Face PreTrainedModel")
    targets = find_target_linears(model, target_modules)
    if not targets:
        raise ValueError("no target nn.Linear modules matched target_modules")
    target_weight_keys = {f"{name}.weight" for name in targets}

    streams = {"index": [], "values": [], "scales": []}
    streams.update({p: [] for p in _PARTS})
    quantized, others = [], []
    kept = total = zeroed = 0
    encodings = {"gaps": 0, "bitmap": 0}

    for name, mod in targets.items():
        w = mod.weight.detach()
        q, scale = quantize_weight(w, quantization)
        kept += int(torch.count_nonzero(w))
        total += w.numel()
        qflat = q.reshape(-1).numpy()
        positions = np.flatnonzero(qflat)
        zeroed += int(torch.count_nonzero(w)) - len(positions)
        candidates = {
            "gaps": _encode_gaps(positions),
            "bitmap": _encode_bitmap(qflat != 0),
        }
        # pick the encoding that compresses smaller (a fast preset suffices)
        choice = min(candidates, key=lambda k: (len(_xz(candidates[k], 6)), k))
        encodings[choice] += 1
        streams["index"].append(candidates[choice])
        streams["values"].append(qflat[positions].tobytes())
        streams["scales"].append(scale.numpy().tobytes())
        quantized.append({
            "name": f"{name}.weight",
            "shape": list(w.shape),
            "dtype": _dtype_name(w.dtype),
            "nnz": int(len(positions)),
            "index": choice,
            "index_bytes": len(candidates[choice]),
        })

    seen: dict[tuple, str] = {}
    fp32_bytes = 0
    for key, t in model.state_dict(keep_vars=True).items():
        fp32_bytes += t.numel() * (4 if t.is_floating_point() else t.element_size())
        if key in target_weight_keys:
            continue
        entry = {"name": key, "shape": list(t.shape), "dtype": _dtype_name(t.dtype)}
        ident = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()))
        if t.numel() and ident in seen:  # tied / shared tensor: store once
            entry["alias_of"] = seen[ident]
        else:
            seen[ident] = key
            sd = _stored_dtype(t, other_dtype)
            entry["stored_dtype"] = _dtype_name(sd)
            entry["part"] = _part_of(key)
            streams[entry["part"]].append(_tensor_bytes(t.detach().to(sd)))
        others.append(entry)

    sections, blobs, offset = [], [], 0
    for sec_name, chunks in streams.items():
        raw = b"".join(chunks)
        blob = _xz(raw, preset, word_bytes=1 if sec_name in ("index", "values") else 2)
        sections.append({"name": sec_name, "offset": offset, "length": len(blob), "raw_length": len(raw)})
        blobs.append(blob)
        offset += len(blob)

    header = {
        "format": "movprune-compact",
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "config": json.loads(config.to_json_string(use_diff=False)),
        "quantization": QUANT_SCHEMES[quantization],
        "other_dtype": other_dtype,
        "compression": "xz/LZMA2 per section; index, values, header: lc=4 lp=0 pb=0; scales and other tensors: lc=0 lp=1 pb=1",
        "target_modules": list(target_modules or default_targets(model)),
        "quantized": quantized,
        "others": others,
        "sections": sections,
    }
    header_blob = _xz(json.dumps(header, separators=(",", ":")).encode("utf-8"), preset)
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(_HEADER.pack(MAGIC, FORMAT_VERSION, len(header_blob)))
        fh.write(header_blob)
        for blob in blobs:
            fh.write(blob)

    parts = {s["name"]: s["length"] for s in sections}
    parts["header"] = _HEADER.size + len(header_blob)
    encoder_bytes = parts["index"] + parts["values"] + parts["scales"]
    file_bytes = path.stat().st_size
    return {
        "path": str(path),
        "file_bytes": file_bytes,
        "encoder_bytes": encoder_bytes,
        "kept_weights": kept,
        "stored_weights": kept - zeroed,
        "kept_weights_quantized_to_zero": zeroed,
        "target_weights": total,
        "target_modules": len(targets),
        "density": kept / total if total else 0.0,
        "bytes_per_kept_weight": encoder_bytes / kept if kept else float("inf"),
        "total_bytes_per_kept_weight": file_bytes / kept if kept else float("inf"),
        "parts": parts,
        "parts_raw": {s["name"]: s["raw_length"] for s in sections},
        "index_encodings": encodings,
        "fp32_state_dict_bytes": fp32_bytes,
        "quantization": QUANT_SCHEMES[quantization]["name"],
        "other_dtype": other_dtype,
    }


# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------
def _read_file(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """Parse a compact file; return ``(header, {section_name: raw_bytes})``."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size or data[:8] != MAGIC:
        raise ValueError(f"{path} is not a movprune compact file (bad magic)")
    _, version, header_len = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported movprune compact format version {version} "
            f"(this movprune reads version {FORMAT_VERSION})"
        )
    start = _HEADER.size + header_len
    if start > len(data):
        raise ValueError(f"{path}: truncated movprune compact file")
    try:
        header = json.loads(_unxz(data[_HEADER.size:start], "header").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt movprune compact header: {exc}") from None
    if header.get("format") != "movprune-compact" or header.get("format_version") != version:
        raise ValueError(f"{path}: inconsistent movprune compact header")
    sections = {}
    for sec in header["sections"]:
        lo = start + sec["offset"]
        hi = lo + sec["length"]
        if hi > len(data):
            raise ValueError(f"{path}: truncated movprune compact file")
        raw = _unxz(data[lo:hi], sec["name"])
        if len(raw) != sec["raw_length"]:
            raise ValueError(f"{path}: section {sec['name']} has the wrong length")
        sections[sec["name"]] = raw
    return header, sections


def _decode_quantized(header: dict, sections: dict[str, bytes]):
    """Yield ``(name, q int8, scale float16, original dtype)`` per matrix."""
    index = memoryview(sections["index"])
    values = np.frombuffer(sections["values"], dtype=np.int8)
    scales = np.frombuffer(sections["scales"], dtype=np.float16)
    scheme = _SCHEME_BY_NAME.get(header.get("quantization", {}).get("name"))
    if scheme is None:
        raise ValueError(f"unknown quantization scheme {header.get('quantization')!r} in compact file")
    i_off = v_off = s_off = 0
    for entry in header["quantized"]:
        rows, cols = entry["shape"]
        nnz, nbytes = entry["nnz"], entry["index_bytes"]
        buf = bytes(index[i_off:i_off + nbytes])
        i_off += nbytes
        if entry["index"] == "gaps":
            positions = _decode_gaps(buf, nnz)
        elif entry["index"] == "bitmap":
            positions = _decode_bitmap(buf, rows * cols)
        else:
            raise ValueError(f"unknown index encoding {entry['index']!r}")
        if len(positions) != nnz or (nnz and positions[-1] >= rows * cols):
            raise ValueError(f"corrupt sparse index for {entry['name']}")
        q = np.zeros(rows * cols, dtype=np.int8)
        q[positions] = values[v_off:v_off + nnz]
        v_off += nnz
        n_scales = rows if scheme == "per_row" else 1
        scale = scales[s_off:s_off + n_scales].copy()
        if len(scale) != n_scales:
            raise ValueError("corrupt movprune compact file (scales too short)")
        s_off += n_scales
        yield (
            entry["name"],
            torch.from_numpy(q.reshape(rows, cols)),
            torch.from_numpy(scale),
            _DTYPES[entry["dtype"]],
        )
    if i_off != len(index) or v_off != len(values) or s_off != len(scales):
        raise ValueError("corrupt movprune compact file (section sizes disagree)")


def read_quantized(path: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Return ``{weight_name: (q int8 [out, in], scale float16 [out] or [1])}``
    exactly as stored in a compact file."""
    header, sections = _read_file(path)
    return {name: (q, s) for name, q, s, _ in _decode_quantized(header, sections)}


def _build_model(header: dict) -> nn.Module:
    import transformers

    cfg = dict(header["config"])
    model_type = cfg.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise ValueError(f"unknown model_type {model_type!r} in compact file")
    config = transformers.CONFIG_MAPPING[model_type].from_dict(cfg)
    cls = getattr(transformers, header["model_class"], None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ValueError(f"unknown model class {header['model_class']!r} in compact file")
    return cls._from_config(config) if hasattr(cls, "_from_config") else cls(config)


@torch.no_grad()
def load_compact(path: str | Path, runtime: str = "float") -> nn.Module:
    """Rebuild the model stored by :func:`export_compact` (offline, from the
    stored config) and return it in eval mode.

    ``runtime="float"`` (default): targeted weights are the dequantized
    ``float32(q) * float32(scale)``, so the model computes exactly what
    ``quantize_model_weights(original)`` computes.

    ``runtime="int8_dynamic"``: targeted layers become
    ``torch.ao.nn.quantized.dynamic.Linear`` holding the stored int8 values and
    scales unchanged (per-channel or per-tensor qint8); activations are quantized on the
    fly, so outputs differ slightly from the float runtime.  (torch 2.13
    marks these quantized-tensor APIs deprecated and warns.)

    Raises ``ValueError`` if ``path`` is not a compact file of a supported
    format version.
    """
    if runtime not in ("float", "int8_dynamic"):
        raise ValueError("runtime must be 'float' or 'int8_dynamic'")
    header, sections = _read_file(path)
    model = _build_model(header)
    state: dict[str, torch.Tensor] = {}
    int8_weights = {}
    for name, q, scale, dtype in _decode_quantized(header, sections):
        state[name] = dequantize_rowwise(q, scale, dtype)
        int8_weights[name] = (q, scale)

    streams = {p: io.BytesIO(sections.get(p, b"")) for p in _PARTS}
    for entry in header["others"]:
        if "alias_of" in entry:
            state[entry["name"]] = state[entry["alias_of"]]
            continue
        sd = _DTYPES[entry["stored_dtype"]]
        shape = entry["shape"]
        nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=sd).element_size()
        buf = streams[entry["part"]].read(nbytes)
        if len(buf) != nbytes:
            raise ValueError("corrupt movprune compact file (tensor data too short)")
        state[entry["name"]] = _tensor_from_bytes(buf, sd, shape).to(_DTYPES[entry["dtype"]])

    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(
            f"compact file does not match {header['model_class']}: "
            f"missing={list(missing)[:5]} unexpected={list(unexpected)[:5]}"
        )
    model.eval()
    if runtime == "int8_dynamic":
        _to_dynamic_int8(model, int8_weights)
    return model


def _to_dynamic_int8(model: nn.Module, int8_weights: dict) -> None:
    """Swap targeted Linear layers for dynamic-quantized ones that hold the
    stored int8 weights bit for bit."""
    from torch.ao.nn.quantized import dynamic as nnqd

    for key, (q, scale) in int8_weights.items():
        mod_name = key.removesuffix(".weight")
        parent_name, _, child = mod_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        s = scale.to(torch.float64)
        s = torch.where(s > 0, s, torch.ones_like(s))  # all-zero rows: any scale
        if len(s) > 1:  # per row (a one-row matrix is the same either way)
            qw = torch._make_per_channel_quantized_tensor(
                q, s, torch.zeros(len(s), dtype=torch.long), 0
            )
        else:
            qw = torch._make_per_tensor_quantized_tensor(q, float(s[0]), 0)
        new = nnqd.Linear(old.in_features, old.out_features, dtype=torch.qint8)
        bias = None if old.bias is None else old.bias.detach().float()
        new.set_weight_bias(qw, bias)
        setattr(parent, child, new)

