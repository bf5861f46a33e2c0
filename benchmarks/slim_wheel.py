"""Rewrite a wheel without the files an import never opens, so ``make wheels`` fits the carry.

PyNvVideoCodec's wheel (27 MB) ships FFmpeg's source tarball, Jupyter samples and each
bundled library three times (``libavformat.so``, ``.so.63``, ``.so.63.1.101``: a wheel
cannot hold symbolic links). Its extension modules need only the sonames
(``readelf -d``: ``libavformat.so.63``, ``libavutil.so.61``), so the slim wheel keeps those
and drops the rest. ``RECORD`` is written again with each kept file's SHA-256 and size, as
the wheel format asks, so pip installs the result like any wheel.

Usage: ``python -m ivy_gpu.benchmarks.slim_wheel WHEEL [--drop PREFIX ...]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import tempfile
import zipfile
from pathlib import Path

#: Dropped from PyNvVideoCodec's wheel: sources, samples, benchmarks, and the library
#: copies under other names than their soname (``lib*.so`` and ``lib*.so.N.M.P``).
PYNVVIDEOCODEC_DROP = (
    r"^[^/]+\.data/data/external/",
    r"^samples/",
    r"^benchmarks/",
    r"^PyNvVideoCodec/lib[^/]+\.so$",
    r"^PyNvVideoCodec/lib[^/]+\.so\.\d+\.\d+\.\d+$",
)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim(wheel: Path, drop: tuple[str, ...] = PYNVVIDEOCODEC_DROP) -> tuple[int, int]:
    """Rewrite ``wheel`` in place without the entries ``drop`` (regexes) match.

    Returns the sizes (bytes) before and after. ``RECORD`` lists every kept file with its
    hash; the ``.dist-info`` is kept whole.
    """
    patterns = [re.compile(p) for p in drop]
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as zin:
        names = zin.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        kept = [n for n in names if n != record and not any(p.search(n) for p in patterns)]
        lines = []
        fd, tmp = tempfile.mkstemp(suffix=".whl", dir=wheel.parent)
        os.close(fd)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
            for name in kept:
                info = zin.getinfo(name)
                data = zin.read(name)
                zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
                if not name.endswith("/"):
                    lines.append(_record_line(name, data))
            lines.append(f"{record},,")
            zout.writestr(record, "\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 otherwise
    os.replace(tmp, wheel)
    return before, wheel.stat().st_size


def main(argv: list[str] | None = None) -> int:
    """Slim each wheel named on the command line; print the sizes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheels", nargs="+", type=Path)
    ap.add_argument("--drop", action="append", help="regex of entries to drop (repeatable)")
    args = ap.parse_args(argv)
    for wheel in args.wheels:
        before, after = slim(wheel, tuple(args.drop) if args.drop else PYNVVIDEOCODEC_DROP)
        print(f"{wheel.name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
