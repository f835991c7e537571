"""What a path says about a file: skipped, a test, documentation, its module name."""

from __future__ import annotations

import re

# Larger files are generated code or data, which only drown the search; source files get more
# room than data files.
MAX_FILE_BYTES = 256 * 1024
MAX_DATA_BYTES = 64 * 1024

# Directories whose contents are someone else's code or build output.
VENDORED_DIRS = frozenset(
    {
        ".git",
        "node_modules",
        "vendor",
        "vendored",
        "third_party",
        "third-party",
        "site-packages",
        ".venv",
        "venv",
        "__pycache__",
        ".tox",
        ".mypy_cache",
        "bower_components",
    }
)

BINARY_EXTS = frozenset(
    [
        "png",
        "jpg",
        "jpeg",
        "gif",
        "bmp",
        "ico",
        "svgz",
        "webp",
        "tif",
        "tiff",
        "pdf",
        "zip",
        "gz",
        "tgz",
        "bz2",
        "xz",
        "7z",
        "tar",
        "whl",
        "egg",
        "jar",
        "war",
        "class",
        "so",
        "dll",
        "dylib",
        "exe",
        "o",
        "a",
        "lib",
        "bin",
        "dat",
        "npy",
        "npz",
        "pkl",
        "pickle",
        "pyc",
        "pyo",
        "db",
        "sqlite",
        "mp3",
        "mp4",
        "wav",
        "ogg",
        "avi",
        "mov",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "psd",
        "h5",
        "hdf5",
        "nc",
        "parquet",
        "feather",
        # Scientific and medical data, office documents, archives, media, model weights:
        # read only to be found binary (test fixtures of this kind can be most of a tree).
        "dcm",
        "dicom",
        "nii",
        "fits",
        "mat",
        "sav",
        "xls",
        "xlsx",
        "docx",
        "pptx",
        "odt",
        "ods",
        "zst",
        "lz4",
        "rar",
        "iso",
        "dmg",
        "deb",
        "rpm",
        "flac",
        "m4a",
        "webm",
        "mkv",
        "heic",
        "avif",
        "icns",
        "wasm",
        "pyd",
        "onnx",
        "pt",  # not .pth: also the text path files of Python packaging
        "ckpt",
        "safetensors",
        "tflite",
    ]
)

SOURCE_EXTS = frozenset(
    [
        "py",
        "pyi",
        "pyx",
        "js",
        "jsx",
        "mjs",
        "cjs",
        "ts",
        "tsx",
        "mts",
        "cts",
        "go",
        "rs",
        "java",
        "kt",
        "scala",
        "c",
        "h",
        "cc",
        "cpp",
        "hpp",
        "cs",
        "rb",
        "php",
        "swift",
        "m",
        "sh",
        "md",
        "rst",
    ]
)
DOC_EXTS = frozenset({"md", "rst", "txt", "adoc", "ipynb"})
TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs", "test_data"})
DOC_DIRS = frozenset(
    {"doc", "docs", "documentation", "example", "examples", "benchmarks", ".github", "changelog"}
)

_TEST_FILE = re.compile(
    r"(^test_.*|.*_test\.\w+$|.*_tests\.\w+$|.*\.(test|spec)\.\w+$|.*Tests?\.java$|^conftest\.py$)"
)


def ext_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot + 1 :].lower() if dot > 0 else ""


def skip_path(path: str) -> bool:
    """Vendored, minified or binary-by-extension files, never read."""
    parts = path.split("/")
    if any(p in VENDORED_DIRS for p in parts[:-1]):
        return True
    name = parts[-1]
    if name.endswith((".min.js", ".min.css", ".map", ".lock")) or name == "package-lock.json":
        return True
    return ext_of(path) in BINARY_EXTS


def too_big(path: str, size: int) -> bool:
    if size > MAX_FILE_BYTES:
        return True
    return size > MAX_DATA_BYTES and ext_of(path) not in SOURCE_EXTS


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def is_test(path: str) -> bool:
    parts = path.lower().split("/")
    if any(p in TEST_DIRS for p in parts[:-1]):
        return True
    return bool(_TEST_FILE.match(path.rsplit("/", 1)[-1]))


def is_doc(path: str) -> bool:
    if ext_of(path) in DOC_EXTS:
        return True
    return any(p in DOC_DIRS for p in path.lower().split("/")[:-1])


def module_names(path: str) -> list[str]:
    """Dotted names a Python file may be imported as: every suffix of its path of two or
    more parts (``src/pkg/mod.py`` → ``pkg.mod``, ``src.pkg.mod``); packages by their dir."""
    if not path.endswith((".py", ".pyi")):
        return []
    stem = path.rsplit(".", 1)[0]
    parts = stem.split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    names = []
    for i in range(len(parts) - 1):
        if all(p.isidentifier() for p in parts[i:]):
            names.append(".".join(parts[i:]))
    if len(parts) >= 1 and parts[-1].isidentifier() and len(parts) == 1:
        names.append(parts[0])
    return names
