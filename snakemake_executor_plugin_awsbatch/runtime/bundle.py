"""Build the job runtime from the Python environment that runs this module.

Run by the job image's own Python (where Snakemake, the storage plugin and this plugin are
installed), with `ldd` and `patchelf` on PATH:

    python -m snakemake_executor_plugin_awsbatch.runtime.bundle DEST

It writes `DEST/<key>/`, a tree that runs from `MOUNT/<key>/` in any image:

    bin/python3          the interpreter; its ELF interpreter is the tree's own dynamic
                         loader and its RPATH the tree's lib/, so it needs nothing of the
                         image (no libc, no LD_LIBRARY_PATH)
    bin/python3._pth     sys.path, exactly: the tree's standard library and packages (this
                         also makes the interpreter ignore PYTHONPATH, PYTHONHOME and the
                         user's site directory, as -I does)
    lib/                 the loader, libc and every shared library the interpreter and the
                         extension modules need (from `ldd`)
    lib/pythonX.Y/       the standard library, lib-dynload and site-packages, compiled to
                         bytecode that is trusted without looking at the sources (the
                         mount is read-only: nothing could be cached at job start)
    RUNTIME.json         what is inside: versions, files, bytes

What jobs never use is left out (pip, build tools, the standard library's tests and GUI
modules, botocore's models of services other than S3 and STS, PuLP's solver binaries),
so the runtime stays small.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from snakemake_executor_plugin_awsbatch import runtime

# Never needed inside a job.
STDLIB_SKIP = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "config-3",  # prefix of the static library's directory
    }
)
# lib-dynload modules that only tests, terminals or audio use: they would pull in
# libraries (ncurses, readline) a job never needs.
DYNLOAD_SKIP = re.compile(
    r"^(_test|_xx|xx|_curses|readline|ossaudiodev|audioop|_ctypes_test|nis|_dbm|_gdbm|_crypt)"
)
SITE_SKIP = re.compile(
    r"^(pip|setuptools|_distutils_hack|pkg_resources|wheel|hatchling|hatch_|pathspec|"
    r"trove_classifiers|distutils-precedence\.pth)([-_.].*)?$"
)
# botocore and boto3 carry a model for every AWS service; a job talks to S3 (and STS
# when a role is assumed).
AWS_SERVICES = frozenset({"s3", "sts"})
LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)")
# Loaded by glibc itself with dlopen (thread cancellation), never listed by ldd.
DLOPENED = ("libgcc_s.so.1",)


class BundleError(RuntimeError):
    """The runtime cannot be built here; the message says what is missing."""


def build(dest: Path, key: str) -> Path:
    """Write the runtime tree `dest/key` (replacing an earlier one) -> its path."""
    for tool in ("ldd", "patchelf"):
        if shutil.which(tool) is None:
            raise BundleError(f"{tool} is not on PATH; install it (Debian: apt-get install {tool})")
    tree = dest / key
    if tree.exists():
        shutil.rmtree(tree)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    pylib = tree / "lib" / version
    _copy_stdlib(Path(sysconfig.get_paths()["stdlib"]), pylib)
    _copy_site_packages(_site_dirs(), pylib / "site-packages")
    python = tree / runtime.PYTHON
    python.parent.mkdir(parents=True)
    shutil.copy2(os.path.realpath(sys.executable), python)
    entries = (
        f"../lib/{version}",
        f"../lib/{version}/lib-dynload",
        f"../lib/{version}/site-packages",
    )
    python.with_name(python.name + "._pth").write_text("".join(f"{e}\n" for e in entries))
    _strip(pylib)
    loader = _copy_libraries(tree, _elf_files(tree))
    _patch_interpreter(python, f"{runtime.MOUNT}/{key}/lib/{loader}")
    _compile(pylib)
    _describe(tree, key, version)
    return tree


def _copy_stdlib(source: Path, target: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in STDLIB_SKIP or n.startswith("config-3")}
        if Path(directory).name == "lib-dynload":
            skipped |= {n for n in names if DYNLOAD_SKIP.match(n)}
        return skipped | {n for n in names if n.endswith(".pyc")}

    shutil.copytree(source, target, ignore=ignore, symlinks=False)
    dynload = Path(sysconfig.get_path("platstdlib")) / "lib-dynload"
    if not (target / "lib-dynload").is_dir() and dynload.is_dir():
        shutil.copytree(dynload, target / "lib-dynload", ignore=ignore)


def _site_dirs() -> list[Path]:
    """The directories of installed packages on this interpreter's sys.path, in order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    found = []
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        wanted = path.name in ("site-packages", "dist-packages") and path.is_dir()
        if wanted and path not in found and path != stdlib:
            found.append(path)
    if not found:
        raise BundleError("no site-packages on sys.path: run this with the job image's Python")
    return found


def _copy_site_packages(sources: list[Path], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:  # the first on sys.path wins, as at import time
        for entry in sorted(source.iterdir()):
            if SITE_SKIP.match(entry.name) or entry.name == "__pycache__":
                continue
            destination = target / entry.name
            if destination.exists():
                continue
            if entry.is_dir():
                shutil.copytree(entry, destination, ignore=_site_ignore)
            else:
                shutil.copy2(entry, destination)
    _prune_aws_models(target)
    _prune_solvers(target)


def _site_ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith(".pyc")}


def _prune_aws_models(site: Path) -> None:
    for data in (site / "botocore" / "data", site / "boto3" / "data"):
        if data.is_dir():
            for service in data.iterdir():
                if service.is_dir() and service.name not in AWS_SERVICES:
                    shutil.rmtree(service)


def _prune_solvers(site: Path) -> None:
    """PuLP's CBC binaries: a job's Snakemake schedules its one job greedily (the executor
    passes --scheduler awsbatch: the plan check, then greedy), and they could not run in a
    tool image anyway."""
    shutil.rmtree(site / "pulp" / "solverdir", ignore_errors=True)


def _strip(pylib: Path) -> None:
    """Drop the symbols of extension modules (wheels ship them): a tenth of the size.
    Optional: without binutils' strip the runtime is only larger."""
    strip = shutil.which("strip")
    if strip is None:
        return
    modules = [str(p) for p in pylib.rglob("*.so*") if p.is_file() and _is_elf(p)]
    for start in range(0, len(modules), 200):
        subprocess.run([strip, "--strip-unneeded", *modules[start : start + 200]], check=False)


def _elf_files(tree: Path) -> Iterator[Path]:
    yield tree / runtime.PYTHON
    for path in sorted((tree / "lib").rglob("*.so*")):
        if path.is_file() and not path.is_symlink() and _is_elf(path):
            yield path


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _copy_libraries(tree: Path, elves: Iterable[Path]) -> str:
    """Copy every library the ELF files need from outside the tree into tree/lib.

    -> the dynamic loader's file name (the interpreter's new ELF interpreter).
    """
    libdir = tree / "lib"
    loader = None
    needed: dict[str, Path] = {}
    for elf in elves:
        for name, path in _ldd(elf):
            if tree in path.parents:
                continue  # a wheel's own libraries, found through its $ORIGIN RPATH
            if name is None:
                loader = path.name
            needed.setdefault(name or path.name, path)
    if loader is None:
        raise BundleError(f"ldd names no dynamic loader for {tree / runtime.PYTHON}")
    for name in DLOPENED:
        found = _find_library(name, needed.values())
        if found is not None:
            needed.setdefault(name, found)
    for name, path in needed.items():
        shutil.copy2(path.resolve(), libdir / name)
    return loader


def _ldd(elf: Path) -> list[tuple[str | None, Path]]:
    """(soname, resolved path) of each library; soname None for the dynamic loader."""
    result = subprocess.run(["ldd", str(elf)], capture_output=True, text=True)
    if result.returncode != 0:
        return []  # not dynamic (a static helper binary)
    missing = [line.split()[0] for line in result.stdout.splitlines() if "not found" in line]
    if missing:
        raise BundleError(f"{elf} needs {', '.join(missing)}, which ldd cannot find here")
    found: list[tuple[str | None, Path]] = []
    for line in result.stdout.splitlines():
        match = LDD_LINE.match(line)
        if match:
            name, path = match.groups()
            found.append((name if name else None, Path(path)))
    return found


def _find_library(name: str, known: Iterable[Path]) -> Path | None:
    for directory in {path.parent for path in known}:
        if (directory / name).exists():
            return directory / name
    return None


def _patch_interpreter(python: Path, loader: str) -> None:
    # DT_RPATH (not RUNPATH) also applies to what the interpreter's libraries and
    # extension modules load, and to what libc itself opens (libgcc_s).
    subprocess.run(
        [
            "patchelf",
            "--set-interpreter",
            loader,
            "--force-rpath",
            "--set-rpath",
            "$ORIGIN/../lib",
            str(python),
        ],
        check=True,
    )


def _compile(pylib: Path) -> None:
    ok = compileall.compile_dir(
        str(pylib),
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        ddir=None,
    )
    if not ok:
        # Some packages carry files for other Python versions (templates, vendored
        # code) that never compile; the modules jobs import do.
        print("note: some files did not compile (never imported by jobs)", file=sys.stderr)


def _describe(tree: Path, key: str, version: str) -> None:
    files = [p for p in tree.rglob("*") if p.is_file()]
    description = {
        "key": key,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "snakemake": runtime.version("snakemake"),
        "plugin": runtime.version(runtime.DISTRIBUTION),
        "storage_plugin_s3": runtime.version("snakemake-storage-plugin-s3"),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
    (tree / runtime.DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m snakemake_executor_plugin_awsbatch.runtime.bundle",
        description="Build the job runtime for tool-only images from this Python.",
    )
    parser.add_argument("dest", type=Path, help="directory to write <key>/ into")
    parser.add_argument(
        "--expect-key",
        help="fail unless this environment's key is this one (the submitting side's)",
    )
    args = parser.parse_args(argv)
    key = runtime.key()
    if args.expect_key and args.expect_key != key:
        print(
            f"error: this environment builds runtime {key}, not {args.expect_key}: its "
            "Snakemake or plugin differs from the submitting side's",
            file=sys.stderr,
        )
        return 1
    try:
        tree = build(args.dest, key)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
