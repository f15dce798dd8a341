"""`--image` and `--audio`: files, URLs and notebook objects turned into content parts.

Local data travels as base64 (a `data:` URL for images, `input_audio.data` for
audio); http(s) image URLs are passed through for the server to fetch. Objects
are recognised by their module name, so numpy, Pillow and matplotlib are never
imported unless the user already holds one of their objects; numpy arrays are
written as PNG by a small encoder here, so they need no Pillow.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import OptionError

__all__ = ["audio_part", "describe_parts", "image_part", "png_from_array"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # OpenAI's limit per image
_IMAGE_HINT = (
    "--image takes a file path, an http(s) URL, or the name of a numpy array, "
    "PIL image or matplotlib figure"
)
_AUDIO_HINT = "--audio takes a wav or mp3 file, bytes, or an IPython.display.Audio object"


def _lookup(spec: str, namespace: Mapping[str, Any]) -> Any:
    """The variable `spec` names, if there is one; else `spec` itself (a path or URL)."""
    return namespace[spec] if spec.isidentifier() and spec in namespace else spec


def _read(flag: str, spec: str, text: str) -> bytes:
    path = Path(text).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise OptionError(f"{flag} {spec}: no such file {text!r}{where}")
    return path.read_bytes()


def _a(obj: Any) -> str:
    """`an Audio`, `a list`: the object's type with its article."""
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- images ---------------------------------------------------------------------------


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _data_url(spec: str, data: bytes, mime: str | None = None) -> str:
    mime = mime or _image_type(data)
    if mime is None:
        raise OptionError(
            f"--image {spec}: not a PNG, JPEG, WebP or GIF image",
            hint="the API takes PNG, JPEG, WebP and non-animated GIF",
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise OptionError(
            f"--image {spec}: {len(data) / 2**20:.1f} MB is over the API's 20 MB per image"
        )
    return f"data:{mime};base64,{_b64(data)}"


def _saved(save: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    save(buffer, **kwargs)
    return buffer.getvalue()


def image_url(obj: Any, spec: str) -> str:
    """The `image_url.url` for a path, URL, bytes, array, PIL image, figure or PNG repr."""
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if text.startswith(("http://", "https://", "data:image/")):
            return text
        return _data_url(spec, _read("--image", spec, text))
    if isinstance(obj, (bytes, bytearray)):
        return _data_url(spec, bytes(obj))
    module = type(obj).__module__.split(".")[0]
    if module == "numpy" and hasattr(obj, "shape"):
        return _data_url(spec, png_from_array(obj, spec), "image/png")
    if module == "matplotlib":
        figure = obj if hasattr(obj, "savefig") else getattr(obj, "figure", None)
        if hasattr(figure, "savefig"):  # a Figure, or an Axes and its figure
            png = _saved(figure.savefig, format="png", bbox_inches="tight")  # type: ignore[union-attr]
            return _data_url(spec, png, "image/png")
    if module == "PIL" and hasattr(obj, "save"):
        image = obj if obj.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else obj.convert("RGBA")
        return _data_url(spec, _saved(image.save, format="PNG"), "image/png")
    for method, mime in (("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg")):
        data = getattr(obj, method, lambda: None)()
        if isinstance(data, bytes) and data:
            return _data_url(spec, data, mime)
    raise OptionError(f"--image {spec}: cannot send {_a(obj)} as an image", hint=_IMAGE_HINT)


def image_part(spec: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """An `image_url` content part for what `--image spec` names."""
    return {"type": "image_url", "image_url": {"url": image_url(_lookup(spec, namespace), spec)}}


def png_from_array(array: Any, spec: str = "array") -> bytes:
    """PNG bytes of a (H, W), (H, W, 3) or (H, W, 4) array: 0-255 integers or 0-1 floats."""
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    colour = {(2, 1): 0, (3, 3): 2, (3, 4): 6}.get((a.ndim, a.shape[-1] if a.ndim == 3 else 1))
    if colour is None or a.size == 0:
        raise OptionError(
            f"--image {spec}: an array of shape {a.shape} is not an image",
            hint="give (height, width), (height, width, 3) for RGB or (height, width, 4) for RGBA",
        )
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f" and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
        a = np.round(a * 255).astype(np.uint8)
    elif a.dtype.kind in "iu" and a.min() >= 0 and a.max() <= 255:
        a = a.astype(np.uint8)
    else:
        raise OptionError(
            f"--image {spec}: array values must be integers 0-255 or floats 0-1 ({a.dtype})"
        )
    height, width = a.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), a.reshape(height, -1)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


# -- audio ----------------------------------------------------------------------------


def _audio_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def audio_part(spec: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """An `input_audio` content part for what `--audio spec` names (wav or mp3)."""
    obj = _lookup(spec, namespace)
    if isinstance(obj, (str, os.PathLike)):
        data = _read("--audio", spec, os.fspath(obj))
    elif isinstance(obj, (bytes, bytearray)):
        data = bytes(obj)
    elif isinstance(getattr(obj, "data", None), bytes):  # IPython.display.Audio
        data = obj.data
    else:
        raise OptionError(f"--audio {spec}: cannot send {_a(obj)} as audio", hint=_AUDIO_HINT)
    fmt = _audio_format(data)
    if fmt is None:
        raise OptionError(f"--audio {spec}: not wav or mp3 audio", hint="the API takes wav and mp3")
    return {"type": "input_audio", "input_audio": {"data": _b64(data), "format": fmt}}


def describe_parts(content: Any) -> str:
    """e.g. `2 images, 1 audio clip` for the non-text parts of a message ('' if none)."""
    if isinstance(content, str):
        return ""
    images = sum(p.get("type") == "image_url" for p in content)
    clips = sum(p.get("type") == "input_audio" for p in content)
    out = [f"{images} image{'s' * (images != 1)}"] if images else []
    out += [f"{clips} audio clip{'s' * (clips != 1)}"] if clips else []
    return ", ".join(out)
