"""Media items: resolving paths safely, decoding data URIs and base64, and proving media decode.

Everything that refuses a media item raises `RecordRejected` with a reason from the fixed
vocabulary, so the caller quarantines the one record and goes on.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

from pipeline.record.location import is_remote, is_within, join, normpath
from pipeline.record.rejection import RecordRejected

_DATA_URI = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.DOTALL)
# A decoder fed hostile bytes can raise nearly anything (OSError, SyntaxError, struct.error,
# ValueError, RuntimeError...); each is one corrupt item, never a crash of the run.
_DECODE_ERRORS = (Exception,)
# Formats whose payload is plain PCM: any bytes are valid samples and libsndfile already
# shortens the frame count of a truncated file, so reading the header proves the clip decodes.
_PCM_CONTAINERS = {"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "CAF"}
_AUDIO_BLOCK_FRAMES = 1 << 16
_BUFFER_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class MediaRoot:
    """The folder media paths of one corpus file resolve against, and whether they may leave it."""

    folder: str
    allow_outside_root: bool = False
    # Opens the folder's files when it is on an object store (a `pipeline.readers.source_fs.
    # SourceFS`: its `read_within`); None for a local folder.
    files: Any = None
    # The real paths of the folders its media sit in, by the folder as joined: `os.path.
    # realpath` lstats every component of a path, twice per media item (the root and the
    # item): ~30% of reading the 2,000-record benchmark jsonl's records and media (0.176 ->
    # 0.127 ms a record). A root lives for one read of one corpus file, so a link retargeted
    # between runs is still followed afresh.
    _real_dirs: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def resolve(self, path: str) -> str:
        """Return the real absolute path (or object URI) of a media path, or raise
        media_outside_root."""
        path = _local_path(path)
        if is_remote(self.folder):
            return self._resolve_remote(path)
        if os.path.isabs(path):
            if not self.allow_outside_root:
                raise RecordRejected(
                    "media_outside_root",
                    f"{path!r} is absolute; set allow_outside_root: true on the source to allow it",
                )
            return os.path.realpath(path)
        root = self._realpath_dir(self.folder)
        # realpath follows symlinks, so a link inside the folder that points outside is caught.
        real = self._realpath(os.path.join(root, path))
        if not self.allow_outside_root and os.path.commonpath([root, real]) != root:
            raise RecordRejected(
                "media_outside_root", f"{path!r} resolves to {real}, outside the corpus folder"
            )
        return real

    def _realpath_dir(self, folder: str) -> str:
        real = self._real_dirs.get(folder)
        if real is None:
            real = self._real_dirs[folder] = os.path.realpath(folder)
        return real

    def _realpath(self, path: str) -> str:
        """Return `os.path.realpath(path)`: its folder's real path (cached) joined with its
        last component, which is resolved too when it is itself a link (one lstat)."""
        folder, name = os.path.split(path)
        if name in ("", ".", "..") or not folder:
            return os.path.realpath(path)
        leaf = os.path.join(self._realpath_dir(folder), name)
        try:
            mode = os.lstat(leaf).st_mode  # a NUL in the name raises ValueError, as realpath does
        except OSError:
            return leaf  # missing: realpath keeps such a component as it is
        return os.path.realpath(leaf) if stat.S_ISLNK(mode) else leaf

    def _resolve_remote(self, path: str) -> str:
        if os.path.isabs(path):
            raise RecordRejected(
                "media_outside_root",
                f"{path!r} is a local path; media of a source on an object store are read "
                "from the store",
            )
        root = normpath(self.folder)
        real = join(root, path)
        if not self.allow_outside_root and not is_within(real, root):
            raise RecordRejected(
                "media_outside_root", f"{path!r} resolves to {real}, outside the corpus folder"
            )
        return real

    def named(self, path: str) -> str:
        """Return the absolute path a media path names, symlinks kept, after `resolve`'s checks
        (raise media_outside_root as it does).

        Hashing this path follows a symlink to wherever it points now, so a retargeted link
        (DVC checkouts do that) is seen as the change it is.
        """
        real = self.resolve(path)
        if is_remote(real):
            return real
        return os.path.normpath(os.path.join(os.path.abspath(self.folder), _local_path(path)))


def _local_path(path: str) -> str:
    """Return a media path without its `file://` scheme; raise media_outside_root for
    any other scheme (remote media is not fetched)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        scheme = path.split("://", 1)[0].lower()
        if scheme != "file":
            raise RecordRejected(
                "media_outside_root", f"{path!r}: remote media is not fetched at ingest"
            )
        path = path[len("file://") :]
    return path


def read_media_file(path: str, root: MediaRoot, max_bytes: int) -> bytes:
    """Return the bytes of the media file at `path` (as written in the corpus), within limits."""
    real = root.resolve(path)
    if is_remote(real):
        return _read_remote_media(path, real, root, max_bytes)
    try:
        st = os.stat(real)
    except OSError:
        raise RecordRejected("missing_media", f"{path!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):  # the stat above, not a second one
        raise RecordRejected("missing_media", f"{path!r} is not a regular file")
    # Checked before reading, so a huge file never enters memory.
    if st.st_size > max_bytes:
        raise RecordRejected(
            "media_too_large", f"{path!r} has {st.st_size} bytes, over the limit of {max_bytes}"
        )
    try:
        with open(real, "rb") as f:
            return f.read()
    except OSError as exc:
        raise RecordRejected("missing_media", f"{path!r} cannot be read: {exc.strerror}") from None


def _read_remote_media(path: str, real: str, root: MediaRoot, max_bytes: int) -> bytes:
    try:
        # One request for the size, one for the bytes, which never come when over the limit.
        size, data = root.files.read_within(real, max_bytes)
    except OSError as exc:
        raise RecordRejected("missing_media", f"{path!r} cannot be read: {exc}") from None
    if size is None:
        raise RecordRejected("missing_media", f"{path!r} does not exist")
    if data is None:
        raise RecordRejected(
            "media_too_large", f"{path!r} has {size} bytes, over the limit of {max_bytes}"
        )
    return data


def decode_base64(data: str, max_bytes: int, what: str = "base64 payload") -> bytes:
    """Return the bytes of a base64 text, refusing oversized payloads before decoding them."""
    if not isinstance(data, str) or not data:
        raise RecordRejected("bad_data_uri", f"{what} is empty or not text")
    compact = re.sub(r"\s+", "", data)
    if len(compact) // 4 * 3 > max_bytes + 2:
        raise RecordRejected(
            "media_too_large",
            f"{what} decodes to about {len(compact) // 4 * 3} bytes, over the limit of {max_bytes}",
        )
    # urlsafe alphabets and dropped padding show up in the wild; normalise both.
    compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordRejected("bad_data_uri", f"{what} is not valid base64: {exc}") from None
    if not raw:
        raise RecordRejected("bad_data_uri", f"{what} decodes to no bytes")
    if len(raw) > max_bytes:
        raise RecordRejected(
            "media_too_large", f"{what} has {len(raw)} bytes, over the limit of {max_bytes}"
        )
    return raw


def is_data_uri(value: str) -> bool:
    """Return whether `value` is a `data:` URI."""
    return value[:5].lower() == "data:"


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """Return the payload bytes of a `data:` URI (base64 or percent-encoded), within limits."""
    m = _DATA_URI.match(uri)
    if not m:
        raise RecordRejected("bad_data_uri", f"malformed data URI starting {uri[:40]!r}")
    params = [p.strip().lower() for p in m.group("params").split(";") if p.strip()]
    if "base64" in params:
        return decode_base64(m.group("data"), max_bytes, what="data URI")
    from urllib.parse import unquote_to_bytes

    raw = unquote_to_bytes(m.group("data"))
    if not raw:
        raise RecordRejected("bad_data_uri", "data URI has no payload")
    if len(raw) > max_bytes:
        raise RecordRejected(
            "media_too_large", f"data URI has {len(raw)} bytes, over the limit of {max_bytes}"
        )
    return raw


@dataclass(frozen=True)
class ImageInfo:
    """What probing an image proved: its container format and size."""

    format: str
    width: int
    height: int


@dataclass(frozen=True)
class AudioInfo:
    """What probing an audio clip proved: container format, rate, channels and length."""

    format: str
    samplerate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0


def _open_within_limit(data: bytes, max_pixels: int):
    """Return the PIL image of `data`, opened (header only) and refused when its pixel count
    exceeds the limit, so a decompression bomb costs a header parse."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Our own limit decides; PIL's global one must not warn or differ per process.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise RecordRejected("image_too_large", f"decompression bomb refused: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise RecordRejected("corrupt_image", f"not a readable image: {_say(exc)}") from None
    try:
        check_image_size(*im.size, max_pixels)
    except RecordRejected:
        im.close()
        raise
    return im


def check_image_size(width: int, height: int, max_pixels: int) -> None:
    """Return None when an image of this size is within `max_pixels`; else raise
    corrupt_image (no pixels) or image_too_large."""
    if width <= 0 or height <= 0:
        raise RecordRejected("corrupt_image", f"image claims size {width}x{height}")
    if width * height > max_pixels:
        raise RecordRejected(
            "image_too_large",
            f"{width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
        )


def probe_image(data: bytes, max_pixels: int, payload: bool = True) -> ImageInfo:
    """Return the format and size of an image after proving its pixels decode within the limit.

    The pixel count is read from the header and refused before any pixel is decoded. The
    format comes from the bytes, not a file name. `payload=False` stops after the header:
    for bytes this process's own encoder just wrote from pixels (`encode_image`), which
    decode by construction.
    """
    from PIL import Image

    with _open_within_limit(data, max_pixels) as im:
        width, height = im.size
        fmt = im.format or "unknown"
        if not payload:
            return ImageInfo(format=fmt, width=width, height=height)
        try:
            if fmt == "JPEG":
                # DCT scaling still entropy-decodes the whole scan (so truncation is caught)
                # but skips most of the inverse transform.
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
            im.load()
        except Image.DecompressionBombError as exc:
            raise RecordRejected("image_too_large", f"decompression bomb refused: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise RecordRejected(
                "corrupt_image", f"{fmt} image does not decode: {_say(exc)}"
            ) from None
    return ImageInfo(format=fmt, width=width, height=height)


def decode_checked_image(data: bytes, max_pixels: int):
    """Return the pixels of an image (as `decode_image` gives them, but read-only) after the
    same checks as `probe_image`: the one decode of a record that is validated and then
    augmented (the augmenter copies them per variant, so a copy here would be a second)."""
    import numpy as np
    from PIL import Image

    # The image whose header passed the limit is the one decoded (one header parse).
    im = _open_within_limit(data, max_pixels)
    pixels = _plain_jpeg_pixels(data, im)
    if pixels is not None:
        pixels.flags.writeable = False
        return pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return np.asarray(_as_viewed(im, keep_alpha=True))
    except Image.DecompressionBombError as exc:
        raise RecordRejected("image_too_large", f"decompression bomb refused: {exc}") from None
    except _DECODE_ERRORS as exc:
        fmt = image_format(data).upper()
        raise RecordRejected("corrupt_image", f"{fmt} image does not decode: {_say(exc)}") from None


def probe_audio(data: bytes, max_seconds: float, payload: bool = True) -> AudioInfo:
    """Return the format and length of an audio clip after proving it decodes within the limit.

    The duration comes from the header and is refused before decoding. Compressed formats
    (flac, mp3, ogg) are then decoded block by block, since only decoding proves their
    payload. `payload=False` stops after the header: for bytes this process's own encoder
    just wrote from samples (`augmenters.audio.encode_flac`, whose header holds the exact
    frame count), which decode by construction.
    """
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except _DECODE_ERRORS as exc:
        raise RecordRejected("corrupt_audio", f"not a readable audio clip: {_say(exc)}") from None
    return _checked_audio(data, info, max_seconds, payload)


def decode_checked_audio(data: bytes, max_seconds: float) -> tuple[AudioInfo, Any]:
    """Return (what `probe_audio` returns, the (samples, rate) `decode_audio` returns or
    None) after the same checks: the one header read of a clip that is validated and then
    augmented. The length limit is held on the header before any sample is read. A plain
    PCM clip (proved by its header) is read from the same open file; any other is proved
    as `probe_audio` proves it, and left to its user to decode (None)."""
    import soundfile as sf

    try:
        f = sf.SoundFile(io.BytesIO(data))
    except _DECODE_ERRORS as exc:
        raise RecordRejected("corrupt_audio", f"not a readable audio clip: {_say(exc)}") from None
    with f:
        # A SoundFile has the attributes of sf.info's result that the checks read.
        probed = _checked_audio(data, f, max_seconds, payload=True)
        if not _plain_pcm(f):
            return probed, None
        try:
            return probed, _read_samples(f)
        except _DECODE_ERRORS as exc:
            raise RecordRejected(
                "corrupt_audio", f"{probed.format} clip does not decode: {_say(exc)}"
            ) from None


def _plain_pcm(info: Any) -> bool:
    return info.format in _PCM_CONTAINERS and info.subtype.startswith(("PCM", "FLOAT", "DOUBLE"))


def _checked_audio(data: bytes, info: Any, max_seconds: float, payload: bool) -> AudioInfo:
    """`probe_audio`'s checks after its header read (`info`: sf.info's result or an open
    SoundFile)."""
    probed = AudioInfo(
        format=info.format, samplerate=info.samplerate, channels=info.channels, frames=info.frames
    )
    check_audio_length(probed, max_seconds)
    if not payload:
        decoded = probed.frames
    elif _plain_pcm(info):
        # libsndfile quietly shortens a truncated file's frame count to what is there, so
        # the count the header declares is what proves the whole clip is present.
        declared = _declared_pcm_frames(data)
        if declared is not None and declared > probed.frames:
            raise RecordRejected(
                "corrupt_audio",
                f"{probed.format} clip is truncated: its header declares {declared} frames, "
                f"the bytes hold {probed.frames}",
            )
        decoded = probed.frames
    else:
        decoded = _decode_all_frames(data, probed.format)
        # mp3 frame counts are estimates without a Xing header; others are exact.
        if probed.format != "MP3" and decoded < probed.frames:
            raise RecordRejected(
                "corrupt_audio",
                f"{probed.format} clip is truncated: decoded {decoded} of {probed.frames} frames",
            )
    if decoded <= 0:
        raise RecordRejected("corrupt_audio", f"{probed.format} clip has no samples")
    return probed


def check_audio_length(info: AudioInfo, max_seconds: float) -> None:
    """Return None when a clip with this header is within `max_seconds`; else raise
    corrupt_audio (no rate or channels) or audio_too_long."""
    if info.samplerate <= 0 or info.channels <= 0:
        raise RecordRejected("corrupt_audio", "audio header has no sample rate or channels")
    if info.seconds > max_seconds:
        raise RecordRejected(
            "audio_too_long",
            f"{info.seconds:.2f} s of audio, over the limit of {max_seconds:g} s",
        )


def _riff_chunks(data: bytes, start: int, big_endian: bool) -> dict[bytes, tuple[int, int]]:
    """Return {chunk id: (payload offset, declared payload size)} of an IFF-style file."""
    order = ">" if big_endian else "<"
    chunks: dict[bytes, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= len(data) and len(chunks) < 64:
        cid = data[pos : pos + 4]
        (size,) = struct.unpack(order + "I", data[pos + 4 : pos + 8])
        chunks.setdefault(cid, (pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def _declared_pcm_frames(data: bytes) -> int | None:
    """Return the frame count a WAV, AIFF or AU header declares; None when it declares none
    (streamed files write 0 or 0xFFFFFFFF) or the container is another one."""
    try:
        if data[:4] in (b"RIFF", b"RIFX") and data[8:12] == b"WAVE":
            chunks = _riff_chunks(data, 12, big_endian=data[:4] == b"RIFX")
            if b"fmt " not in chunks or b"data" not in chunks:
                return None
            fmt_at, _ = chunks[b"fmt "]
            order = ">" if data[:4] == b"RIFX" else "<"
            (block_align,) = struct.unpack(order + "H", data[fmt_at + 12 : fmt_at + 14])
            size = chunks[b"data"][1]
            if block_align <= 0 or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        if data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
            chunks = _riff_chunks(data, 12, big_endian=True)
            if b"COMM" not in chunks:
                return None
            comm_at, _ = chunks[b"COMM"]
            (frames,) = struct.unpack(">I", data[comm_at + 2 : comm_at + 6])
            return frames or None
        if data[:4] == b".snd":
            offset, size, _enc, _rate, channels = struct.unpack(">IIIII", data[4:24])
            width = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8}.get(_enc)
            if size == 0xFFFFFFFF or not width or not channels:
                return None
            return size // (width * channels)
    except struct.error:
        return None
    return None


def _decode_all_frames(data: bytes, fmt: str) -> int:
    import soundfile as sf

    decoded = 0
    try:
        if fmt == "MP3":
            # libsndfile's mpg123 path misdecodes MP3 read in blocks (python-soundfile #402:
            # wrong samples, "part2_3_length too large" on stderr); one read is exact, and the
            # clip's length is already bounded by max_audio_seconds from its header.
            return len(sf.read(io.BytesIO(data), dtype="float32")[0])
        with sf.SoundFile(io.BytesIO(data)) as f:
            while True:
                block = f.read(_AUDIO_BLOCK_FRAMES, dtype="float32")
                if not len(block):
                    break
                decoded += len(block)
    except _DECODE_ERRORS as exc:
        raise RecordRejected("corrupt_audio", f"{fmt} clip does not decode: {_say(exc)}") from None
    return decoded


def _say(exc: BaseException) -> str:
    # Decoders name the in-memory buffer by address; that says nothing to the reader of a report.
    return _BUFFER_REPR.sub("the bytes", str(exc)) or type(exc).__name__


# --- the one codec: how every stage (validation, augmenters, trainer) sees pixels and samples ---

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
)
IMAGE_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95


def image_format(data: bytes) -> str:
    """Return the container format of encoded image bytes: jpeg, png, webp, gif, bmp or unknown."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def _to_8bit(im):
    """Return a high-bit-depth grayscale PIL image as mode L, scaled (PIL would clip to white)."""
    import numpy as np
    from PIL import Image

    values = np.asarray(im)
    if im.mode == "F":
        top = 1.0 if float(values.max(initial=0.0)) <= 1.0 else 255.0
    elif im.mode.startswith("I;16") or int(values.max(initial=0)) > 255:
        top = 65535.0
    else:
        top = 255.0
    scaled = np.clip(values.astype(np.float64) * (255.0 / top), 0, 255).round()
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def open_image(
    data: bytes, keep_alpha: bool = True, draft: tuple[str, tuple[int, int]] | None = None
):
    """Return a decoded PIL image as viewers show it: EXIF orientation applied, RGB, or RGBA
    when `keep_alpha` and the image has alpha (palette transparency included); 16-bit and
    float grayscale scaled to 8 bits, palette, grayscale and CMYK expanded to RGB.

    `draft` (mode, size) is Pillow's `Image.draft`: a JPEG is decoded at the smallest DCT
    scale (1/2 to 1/8) no smaller than `size`, in `mode` where the decoder can (`"L"`: the
    luma plane only, returned as it is, grey), several times faster; other formats ignore
    it. For readers that need a small picture (a perceptual hash), never for pixels a
    record keeps."""
    from PIL import Image

    raw = Image.open(io.BytesIO(data))
    if draft is not None:
        raw.draft(*draft)
    return _as_viewed(raw, keep_alpha, grey=draft is not None and draft[0] == "L")


def _as_viewed(im, keep_alpha: bool, grey: bool = False):
    """Return an opened PIL image loaded, as `open_image` describes it (in place when it can);
    with `grey`, an image that loaded as plain L stays L (RGB of it would only repeat it)."""
    from PIL import ImageOps

    im.load()
    # In place: without an orientation to apply, the default returns a copy of every pixel
    # (as long as the decode itself). The file is in memory, so nothing is left open.
    ImageOps.exif_transpose(im, in_place=True)
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        im = _to_8bit(im)
    if grey and im.mode == "L":
        return im
    has_alpha = im.mode in ("RGBA", "LA", "La", "PA", "RGBa") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    mode = "RGBA" if keep_alpha and has_alpha else "RGB"
    return im if im.mode == mode else im.convert(mode)


def decode_image(data: bytes, keep_alpha: bool = True):
    """Return HxWx3 (or HxWx4 with alpha, when kept) uint8 pixels of encoded image bytes."""
    import numpy as np
    from PIL import Image

    raw = Image.open(io.BytesIO(data))
    pixels = _plain_jpeg_pixels(data, raw)
    if pixels is not None:
        return pixels
    return np.asarray(_as_viewed(raw, keep_alpha)).copy()


_EXIF_ORIENTATION = 0x0112


def _decodes_as_pillow(data: bytes, im, modes: tuple[str, ...]) -> bool:
    """Return whether OpenCV decodes JPEG `data` (`im`: its opened, not yet loaded PIL
    image) as `open_image` sees it: a JPEG in one of `modes`, complete (it ends in its EOI
    marker: OpenCV would fill a truncated one in grey where Pillow refuses it), with no
    orientation to apply: Pillow's `getexif` (which `exif_transpose` reads) also takes it
    from an XMP packet's tiff:Orientation, which OpenCV never reads."""
    if im.format != "JPEG" or im.mode not in modes or not data.endswith(b"\xff\xd9"):
        return False
    if "exif" not in im.info and "xmp" not in im.info:
        return True
    return im.getexif().get(_EXIF_ORIENTATION, 1) == 1


def jpeg_luma(data: bytes, min_side: int):
    """Return the luma plane (HxW uint8) of a plain JPEG (colour or grey, complete, no EXIF
    rotation), decoded by OpenCV at the largest DCT scale-down (1/8, 1/4, 1/2) that keeps
    its short side at least `min_side` pixels; None for anything else (`open_image` reads it).

    For readers that need a small grey picture (a perceptual hash), never for pixels a
    record keeps. libjpeg-turbo decodes a colour JPEG to grey as its Y plane, as Pillow's
    draft in mode L does; at 1/8 it takes each block's DC value alone, and nothing but the
    entropy decoding is left of the decode's cost.
    """
    from PIL import Image, UnidentifiedImageError

    if not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        im = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    if not _decodes_as_pillow(data, im, ("RGB", "L")):
        return None
    import cv2
    import numpy as np

    scale = next((f for f in (8, 4, 2) if min(im.size) // f >= min_side), 1)
    flag = {
        8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
        4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
        2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
        1: cv2.IMREAD_GRAYSCALE,
    }[scale]
    try:
        luma = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    return luma if luma is not None and luma.ndim == 2 else None


def _plain_jpeg_pixels(data: bytes, im):
    """Return the RGB pixels of a plain JPEG (3-channel, complete, no EXIF rotation) decoded
    by OpenCV, else None (`im`: the opened, not yet loaded PIL image of `data`).

    OpenCV's libjpeg-turbo gives the same pixels as Pillow's (both decode with the integer
    IDCT and fancy upsampling; tests/pipeline/test_media_codec.py holds them to it)
    in ~60% of Pillow's time, which adds an RGBX unpacking pass and a copy. Anything else,
    a file that does not end in its EOI marker included (`_decodes_as_pillow`), goes to Pillow.
    """
    if not _decodes_as_pillow(data, im, ("RGB",)):
        return None
    import cv2
    import numpy as np

    # OpenCV >= 4.11 has libjpeg-turbo write RGB itself (the same values, in the other
    # order): that saves the BGR->RGB pass, ~20% of the decode.
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
    flags = (cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if pixels is None or pixels.shape != (im.height, im.width, 3):
        return None
    return pixels if rgb_flag is not None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def variant_image_format(fmt: str) -> str:
    """Return the format a variant of a `fmt` image is written in (itself when it can be)."""
    return fmt if fmt in IMAGE_EXTENSIONS else "png"


def encode_image(pixels, fmt: str) -> bytes:
    """Return RGB/RGBA uint8 pixels encoded as `fmt` (jpeg at quality 95, png, webp, bmp);
    alpha is kept where the format has it."""
    import cv2
    import numpy as np

    fmt = variant_image_format(fmt)
    if pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
        if fmt == "jpeg":  # the only variant format without alpha
            bgr = bgr[:, :, :3]
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    else:
        bgr = pixels
    flags = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY],
    }
    ok, buf = cv2.imencode(IMAGE_EXTENSIONS[fmt], np.ascontiguousarray(bgr), flags.get(fmt, []))
    if not ok:
        raise ValueError(f"could not encode image as {fmt}")
    return buf.tobytes()


def decode_audio(data: bytes):
    """Return (float32 samples shaped (frames, channels), sample rate) of encoded audio."""
    import soundfile as sf

    with sf.SoundFile(io.BytesIO(data)) as f:
        return _read_samples(f)


def wav_pcm16(data: bytes):
    """Return `decode_audio`'s (samples, rate) of a complete 16-bit PCM WAV, read by the
    standard library's `wave`; None for anything else (`decode_audio` reads it).

    For readers that only analyse the samples (a spectral hash), never for samples a record
    keeps. The same float32 values as `decode_audio` (x / 0x8000, as libsndfile scales
    16-bit PCM), without libsndfile's reads through Python callbacks: 0.014 against 0.079
    ms per 5 s benchmark clip.
    """
    import wave

    import numpy as np

    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2:
                return None
            channels, rate, frames = w.getnchannels(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError, struct.error, ValueError):
        return None
    if channels < 1 or len(raw) != frames * channels * 2:
        return None  # truncated: libsndfile's reading decides
    return _pcm16_floats(np.frombuffer(raw, "<i2").reshape(frames, channels)), rate


def _pcm16_floats(pcm: Any) -> Any:
    """Return 16-bit PCM samples as the float32 values libsndfile reads them as: x * (1.0f /
    0x8000) (its pcm.c), exact in float32 for every int16."""
    import numpy as np

    return np.multiply(pcm, np.float32(1 / 0x8000), dtype=np.float32)


def _read_samples(f: Any) -> tuple[Any, int]:
    """Return `decode_audio`'s (samples, rate) of an open SoundFile."""
    rate = int(f.samplerate)
    # As `sf.read` reads: from a seek to the start (an MP3's samples differ without it).
    if f.seekable():
        f.seek(0)
    if f.format in _PCM_CONTAINERS and f.subtype == "PCM_16":
        # The same samples from libsndfile's int16 read scaled here, in ~55% of the time
        # of its own float conversion loop.
        return _pcm16_floats(f.read(f.frames, dtype="int16", always_2d=True)), rate
    return f.read(f.frames, dtype="float32", always_2d=True), rate
