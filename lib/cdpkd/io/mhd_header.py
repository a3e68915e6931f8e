"""MetaImage (``.mhd`` / ``.mha``) header parsing; no pixel data is read here.

A header is ``Key = Value`` text lines ending with ``ElementDataFile``: either
a file name (relative to the header's folder), ``LOCAL`` (data follows the
header in the same file, the ``.mha`` form), or a ``LIST``/pattern form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Fixed-size MetaIO element types. MET_LONG / MET_ULONG are left out on purpose:
# their width follows the writer's C ``long`` (4 or 8 bytes), so a size check could not be trusted.
ELEMENT_DTYPES: dict[str, str] = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}

_MAX_HEADER_LINES = 10_000  # a header is a few dozen lines; stop early on a binary file
_MAX_LINE_BYTES = 1 << 16
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class MetaImageHeader:
    """Parsed header: ``fields`` keeps every key and value as written (strings).

    ``data_offset`` is the byte just after the ``ElementDataFile`` line, where
    ``LOCAL`` data starts.
    """

    path: Path
    fields: dict[str, str]
    data_offset: int

    def get(self, key: str, default: str | None = None) -> str | None:
        """Field value by key, matched case-insensitively (writers differ in case)."""
        lower = key.lower()
        for k, v in self.fields.items():
            if k.lower() == lower:
                return v
        return default

    def flag(self, key: str, default: bool = False) -> bool:
        """Boolean field (``True``/``False``, ``1``/``0``); a bad value is a ValueError."""
        value = self.get(key)
        if value is None:
            return default
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
        raise ValueError(f"{self.path}: {key} = {value!r} is not a boolean")

    def numbers(self, key: str) -> list[float] | None:
        """Whitespace-separated numeric field as floats, or ``None`` when absent."""
        value = self.get(key)
        if value is None:
            return None
        try:
            return [float(v) for v in value.split()]
        except ValueError:
            raise ValueError(f"{self.path}: {key} = {value!r} is not a list of numbers") from None

    @property
    def dim_size(self) -> list[int]:
        """``DimSize`` in MetaImage order (x = fastest-varying first); checked against ``NDims``."""
        dims = self.numbers("DimSize")
        if not dims:
            raise ValueError(f"{self.path}: header has no DimSize")
        if any(d != int(d) or d < 1 for d in dims):
            raise ValueError(f"{self.path}: DimSize must be positive integers, got {self.get('DimSize')!r}")
        ndims = self.get("NDims")
        if ndims is not None and int(ndims) != len(dims):
            raise ValueError(f"{self.path}: NDims = {ndims} but DimSize has {len(dims)} values")
        return [int(d) for d in dims]

    @property
    def element_type(self) -> str:
        """``ElementType`` string, e.g. ``MET_FLOAT``."""
        value = self.get("ElementType")
        if value is None:
            raise ValueError(f"{self.path}: header has no ElementType")
        return value.strip().upper()

    @property
    def big_endian(self) -> bool:
        """Byte order from ``BinaryDataByteOrderMSB`` / ``ElementByteOrderMSB`` (synonyms)."""
        flags = {k: self.flag(k) for k in ("BinaryDataByteOrderMSB", "ElementByteOrderMSB") if self.get(k)}
        if len(set(flags.values())) > 1:
            raise ValueError(f"{self.path}: contradictory byte-order fields {flags}")
        return any(flags.values())

    @property
    def channels(self) -> int:
        """``ElementNumberOfChannels`` (default 1)."""
        return int(self.get("ElementNumberOfChannels", "1"))

    @property
    def compressed(self) -> bool:
        """``CompressedData`` flag."""
        return self.flag("CompressedData")

    @property
    def data_file(self) -> str:
        """Raw ``ElementDataFile`` value."""
        value = self.get("ElementDataFile")
        if value is None:
            raise ValueError(f"{self.path}: header has no ElementDataFile")
        return value.strip()

    def numpy_dtype(self) -> np.dtype:
        """Element dtype with the header's byte order; ValueError for unsupported types."""
        code = ELEMENT_DTYPES.get(self.element_type)
        if code is None:
            raise ValueError(
                f"{self.path}: unsupported ElementType {self.element_type!r}; "
                f"supported: {', '.join(ELEMENT_DTYPES)}"
            )
        return np.dtype((">" if self.big_endian else "<") + code)

    def single_data_path(self) -> Path | None:
        """Path of the one data file (``LOCAL`` gives the header itself); ``None`` for LIST/patterns."""
        name = self.data_file
        if name.upper() == "LOCAL":
            return self.path
        if name.upper().startswith("LIST") or "%" in name:
            return None
        return self.path.parent / name


def parse_header(path: str | Path) -> MetaImageHeader:
    """Read the ``Key = Value`` lines of a MetaImage header up to ``ElementDataFile``.

    Raises FileNotFoundError for a missing file and ValueError for a file that
    is not a MetaImage header (no ``ElementDataFile`` line, malformed line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MetaImage header not found: {path}")
    fields: dict[str, str] = {}
    offset = 0
    # binary mode: in the .mha form pixel bytes follow the header and must not be decoded
    with open(path, "rb") as fh:
        # bounded reads: a binary file without newlines must not be slurped as one "line"
        for lineno, raw in enumerate(iter(lambda: fh.readline(_MAX_LINE_BYTES), b""), start=1):
            offset += len(raw)
            if lineno > _MAX_HEADER_LINES or (len(raw) == _MAX_LINE_BYTES and not raw.endswith(b"\n")):
                break
            try:
                line = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise ValueError(f"{path}: line {lineno} is not ASCII text; not a MetaImage header") from None
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{path}: line {lineno} is not 'Key = Value': {line[:80]!r}")
            fields[key.strip()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                return MetaImageHeader(path=path, fields=fields, data_offset=offset)
    raise ValueError(f"{path}: no ElementDataFile line; not a MetaImage header")
