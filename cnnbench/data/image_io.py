"""Image files → uint8 HWC RGB arrays: the decoders every reader of image files shares (the data module, the
fast path, the nvJPEG path, the eval readers, the loader benchmark).

`load_image_file` decodes any format with PIL; `load_rgb` and `decode_rgb` decode JPEGs with OpenCV (libjpeg-turbo;
`decode_rgb` also at 1/2, 1/4, 1/8 scale in the DCT domain) and fall back to PIL; `header_size` reads an image's
size from its header without decoding the pixels (`jpeg_frame_size`: ITU T.81 §B.2.2 for JPEGs).
"""
from __future__ import annotations

import functools
import io

import numpy as np

from cnnbench.data.sources import BadImageError

REDUCTIONS = (8, 4, 2)  # DCT-domain scale factors libjpeg supports (besides 1)


@functools.cache
def _flags() -> dict[int, int]:
    """cv2.imdecode flags per reduction: straight to RGB (the REDUCED_COLOR flags carry IMREAD_COLOR = BGR,
    which cannot be combined with RGB), EXIF orientation ignored as PIL does."""
    import cv2

    return {k: (flag & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
            for k, flag in {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                            8: cv2.IMREAD_REDUCED_COLOR_8}.items()}


def load_image_file(path: str) -> np.ndarray:
    """Any image file → uint8 HWC RGB (gray, palette, RGBA, CMYK and 16-bit modes converted).

    A file that cannot be decoded raises `BadImageError` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise BadImageError(f"cannot decode image {path}: {' '.join(str(err).split())}") from None
    with im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            arr = np.clip(arr / (257.0 if arr.max() > 255 else 1.0), 0, 255).astype(np.uint8)
            return np.repeat(arr[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


def read_bytes(path: str) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8)


def is_jpeg(buf: np.ndarray) -> bool:
    return len(buf) > 3 and buf[0] == 0xFF and buf[1] == 0xD8


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (ITU T.81 Table B.1)
_NO_LENGTH = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM: markers without a length field


def jpeg_frame_size(buf: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment (ITU T.81 §B.2.2), walking the marker segments
    before it; None when the stream does not reach one before the scan data (then PIL decides)."""
    data, i, n = memoryview(buf), 2, len(buf)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        if marker in _SOF:
            if i + 9 > n:
                return None
            h, w = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            return (h, w) if h and w else None  # height 0: defined later by a DNL segment
        if marker == 0xDA:  # start of scan before any frame header: not a valid JPEG
            return None
        i += 2 + ((data[i + 2] << 8) | data[i + 3])
    return None


def header_size(buf: np.ndarray) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels: the JPEG frame header, else PIL's
    parser (other formats, unusual streams; it raises on a broken file). EXIF orientation is ignored, as by
    the decoders here. Hand-written for JPEGs because opening the file with PIL costs about a tenth of the
    whole decode of a 500×375 photo."""
    if is_jpeg(buf):
        size = jpeg_frame_size(buf)
        if size is not None:
            return size
    from PIL import Image

    with Image.open(io.BytesIO(buf.tobytes())) as im:
        w, h = im.size
    return h, w


def decode_rgb(buf: np.ndarray, reduce: int = 1) -> np.ndarray | None:
    """A JPEG as uint8 HWC RGB at 1/reduce scale (None if OpenCV cannot decode it)."""
    if not is_jpeg(buf):
        return None
    import cv2

    img = cv2.imdecode(buf, _flags()[reduce])
    return img if img is not None and img.ndim == 3 and img.shape[2] == 3 else None


def load_rgb(path: str) -> np.ndarray:
    """Any image file → uint8 HWC RGB: OpenCV for JPEGs, PIL (`load_image_file`) for everything else."""
    img = decode_rgb(read_bytes(path))
    return load_image_file(path) if img is None else img


__all__ = ["REDUCTIONS", "decode_rgb", "header_size", "is_jpeg", "jpeg_frame_size", "load_image_file", "load_rgb",
           "read_bytes"]
