"""Where the training functions come from: the standard library and pinned PyPI sdists.

The manifest (``training/manifest.toml``) pins each PyPI project and declares its
licence. :func:`fetch` downloads the sdists with pip into a cache, :func:`licence_of`
reads the licence from the sdist's own metadata (or licence file), and only MIT, BSD,
Apache-2.0 and PSF sources are read. Test files are never read: they are tests, not
functions, and the package's tests are not what a model should learn to write.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import tomllib

ALLOWED_LICENCES = ("MIT", "BSD", "Apache-2.0", "PSF")
MANIFEST = Path(__file__).with_name("manifest.toml")

_TEST_PARTS = {"test", "tests", "testing", "idle_test", "unittests", "doc", "docs",
               "examples", "example", "benchmarks", "bench", "site-packages"}


@dataclass(frozen=True)
class Source:
    name: str  # "stdlib" or the PyPI project
    version: str
    declared_licence: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def load_manifest(path: Path = MANIFEST) -> list[Source]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [Source(p["name"], str(p["version"]), p["license"]) for p in data["package"]]


def stdlib_source() -> Source:
    return Source("stdlib", sys.version.split()[0], "PSF")


def normalise_licence(text: str) -> str | None:
    """One of ALLOWED_LICENCES for a licence name, classifier or SPDX expression, else
    None. An expression with several licences (``MIT OR GPL``) counts as its first
    permissive one only when joined by OR."""
    t = text.strip()
    if not t:
        return None
    parts = re.split(r"\s+OR\s+", t) if " OR " in t else [t]
    for part in parts:
        u = part.upper()
        if " AND " in u:
            continue
        if re.search(r"\bGPL|\bLGPL|\bAGPL|\bMPL|\bEPL|ZOPE|\bZPL|ARTISTIC|UNLICENSE|ISC\b", u):
            continue
        if re.search(r"\bMIT\b|MIT LICENSE|EXPAT", u):
            return "MIT"
        if re.search(r"\bBSD\b|BSD-\d|BSD LICENSE|NEW BSD|3-CLAUSE|2-CLAUSE", u):
            return "BSD"
        if "APACHE" in u:
            return "Apache-2.0"
        if "PYTHON SOFTWARE FOUNDATION" in u or re.search(r"\bPSF\b", u):
            return "PSF"
    return None


_LICENCE_TEXTS = (
    ("MIT", "Permission is hereby granted, free of charge"),
    ("BSD", "Redistribution and use in source and binary forms"),
    ("Apache-2.0", "Apache License"),
)


def licence_of(pkg_info: str, licence_files: list[str]) -> str | None:
    """The licence an sdist declares: License-Expression, then the License field (if
    short), then trove classifiers, then the text of its licence file."""
    meta = email.parser.Parser().parsestr(pkg_info)
    for value in [meta.get("License-Expression", "")]:
        if value:
            return normalise_licence(value)
    declared = False
    field = meta.get("License", "") or ""
    if field and len(field) < 80 and field.upper() not in ("UNKNOWN", "NONE"):
        declared = True
        found = normalise_licence(field)
        if found:
            return found
    for classifier in meta.get_all("Classifier") or []:
        if classifier.startswith("License ::") and classifier != "License :: OSI Approved":
            declared = True
            found = normalise_licence(classifier.split("::")[-1])
            if found:
                return found
    if declared:
        # The metadata names a licence we do not accept (ZPL's text, say, shares BSD's
        # wording): the licence file must not overrule it.
        return None
    for text in licence_files:
        for name, marker in _LICENCE_TEXTS:
            if marker.lower() in " ".join(text.split()).lower():
                return name
    return None


def fetch(sources: list[Source], cache: Path, python: str = sys.executable,
          jobs: int = 4) -> dict[str, Path | str]:
    """Download each source's sdist into ``cache`` (once). Name -> archive, or the error."""
    cache.mkdir(parents=True, exist_ok=True)

    def one(source: Source) -> tuple[str, Path | str]:
        found = _cached(cache, source)
        if found:
            return source.name, found
        target = cache / f"{source.name}-{source.version}.download"
        target.mkdir(exist_ok=True)
        cmd = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               source.spec, "-d", str(target)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = [p for p in target.iterdir() if _is_archive(p)]
        if done.returncode != 0 or not archives:
            tail = (done.stderr.strip().splitlines() or ["no sdist"])[-1]
            shutil.rmtree(target, ignore_errors=True)
            return source.name, f"download failed: {tail}"
        final = cache / archives[0].name
        archives[0].replace(final)
        for leftover in target.iterdir():
            leftover.unlink()
        target.rmdir()
        return source.name, final

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(pool.map(one, sources))


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".zip", ".tar.bz2", ".tgz"))


def _cached(cache: Path, source: Source) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", source.name).lower()
    for path in sorted(cache.iterdir()):
        if not _is_archive(path):
            continue
        name = re.sub(r"[-_.]+", "_", path.name).lower()
        if name.startswith(f"{stem}_{source.version.replace('.', '_')}_") or \
                name.startswith(f"{stem}_{source.version.replace('.', '_')}tar"):
            return path
    return None


def read_archive(archive: Path) -> dict[str, str]:
    """Every text member of an sdist: path below the top folder -> text."""
    out: dict[str, str] = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir() and _wanted_member(info.filename) and info.file_size < 2_000_000:
                    out[_strip_top(info.filename)] = zf.read(info).decode("utf-8", "replace")
        return out
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            if member.isfile() and _wanted_member(member.name) and member.size < 2_000_000:
                handle = tf.extractfile(member)
                if handle is not None:
                    out[_strip_top(member.name)] = handle.read().decode("utf-8", "replace")
    return out


def _strip_top(name: str) -> str:
    parts = PurePosixPath(name).parts
    return "/".join(parts[1:]) if len(parts) > 1 else name


def _wanted_member(name: str) -> bool:
    base = PurePosixPath(name).name.upper()
    return name.endswith(".py") or base == "PKG-INFO" or base.startswith(("LICENSE", "LICENCE",
                                                                           "COPYING"))


def sdist_licence(members: dict[str, str]) -> str | None:
    pkg_info = members.get("PKG-INFO", "")
    files = [text for path, text in members.items()
             if "/" not in path and PurePosixPath(path).name.upper().startswith(
                 ("LICENSE", "LICENCE", "COPYING"))]
    return licence_of(pkg_info, files)


def is_code_file(path: str) -> bool:
    """A library module, not a test, example, doc, build script or vendored copy."""
    p = PurePosixPath(path)
    if p.suffix != ".py":
        return False
    if any(part.lower() in _TEST_PARTS or part.lower() in ("_vendor", "vendor", "_vendored",
                                                              "extern", "_distutils")
           for part in p.parts[:-1]):
        return False
    name = p.name
    return not (name.startswith("test_") or name.endswith("_test.py") or name in
                ("conftest.py", "setup.py", "noxfile.py", "fabfile.py", "tasks.py",
                 "conf.py", "__main__.py"))


def stdlib_files() -> Iterator[tuple[str, str]]:
    """(path below Lib/, text) for the building Python's standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("lib2to3/", "tkinter/", "turtledemo/")) or not is_code_file(rel):
            continue
        try:
            yield rel, path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
