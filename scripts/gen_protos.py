#!/usr/bin/env python3
"""Generate the Python code for every .proto under protos/.

The generated modules land in clients/python/ so that
protos/agentauth/v1/admin.proto becomes the importable module
``agentauth.v1.admin_pb2`` with no import rewriting: the client SDK owns the
generated code and the server imports it from there.

Usage:
    python scripts/gen_protos.py          # regenerate in place
    python scripts/gen_protos.py --check  # exit 1 if the committed code is stale

Both modes generate into a temporary directory first, so a failed protoc run
never leaves a half-written tree and ``--check`` sees exactly what a
regeneration would write.
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
OUT_ROOT = REPO_ROOT / "clients" / "python"

# What protoc writes for one foo.proto. Anything under OUT_ROOT matching these
# is treated as generated, so a file left behind by a deleted proto counts as
# stale instead of lingering forever.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

PACKAGE_DOCSTRING = '"""Generated protobuf and gRPC modules for {package}."""\n'


def _well_known_include() -> str:
    """Return grpc_tools' bundled include dir (google/protobuf/*.proto)."""
    return str(importlib.resources.files("grpc_tools") / "_proto")


def _proto_files() -> list[Path]:
    return sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))


def _is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def _generated_files(root: Path) -> set[Path]:
    """Relative paths of the generated files under root."""
    if not root.is_dir():
        return set()
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and _is_generated(p)}


def _package_inits(generated: set[Path]) -> set[Path]:
    """The __init__.py each directory holding generated modules needs."""
    return {rel.parent / "__init__.py" for rel in generated}


def _generate(out_dir: Path) -> None:
    protos = _proto_files()
    if not protos:
        sys.exit(f"no .proto files under {PROTO_ROOT}")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{_well_known_include()}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        # Paths relative to the include root so the descriptors embed
        # "agentauth/v1/x.proto", not a machine-specific absolute path.
        *(str(p) for p in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        sys.exit(f"protoc failed with exit code {code}")


def _check(fresh_root: Path) -> int:
    fresh = _generated_files(fresh_root)
    committed = _generated_files(OUT_ROOT)
    problems: list[str] = []
    for rel in sorted(fresh - committed):
        problems.append(f"missing:   {OUT_ROOT.relative_to(REPO_ROOT) / rel}")
    for rel in sorted(committed - fresh):
        problems.append(f"extra:     {OUT_ROOT.relative_to(REPO_ROOT) / rel}")
    for rel in sorted(fresh & committed):
        if (fresh_root / rel).read_bytes() != (OUT_ROOT / rel).read_bytes():
            problems.append(f"differs:   {OUT_ROOT.relative_to(REPO_ROOT) / rel}")
    for rel in sorted(_package_inits(fresh)):
        if not (OUT_ROOT / rel).is_file():
            problems.append(f"missing:   {OUT_ROOT.relative_to(REPO_ROOT) / rel}")
    if problems:
        print("generated protobuf code is stale:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print("run: python scripts/gen_protos.py", file=sys.stderr)
        return 1
    print("generated protobuf code is up to date")
    return 0


def _write(fresh_root: Path) -> None:
    fresh = _generated_files(fresh_root)
    for rel in sorted(_generated_files(OUT_ROOT) - fresh):
        (OUT_ROOT / rel).unlink()
        print(f"removed {OUT_ROOT.relative_to(REPO_ROOT) / rel}")
    for rel in sorted(fresh):
        dest = OUT_ROOT / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh_root / rel, dest)
    for rel in sorted(_package_inits(fresh)):
        init = OUT_ROOT / rel
        # Never overwrite: the committed __init__.py is hand-maintained.
        if not init.exists():
            package = ".".join(rel.parent.parts)
            init.write_text(PACKAGE_DOCSTRING.format(package=package))
            print(f"created {OUT_ROOT.relative_to(REPO_ROOT) / rel}")
    print(f"generated {len(fresh)} files under {OUT_ROOT.relative_to(REPO_ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate Python code from protos/ into clients/python/."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare freshly generated code with the committed files; exit 1 if stale",
    )
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentauth-protos-") as tmp:
        fresh_root = Path(tmp)
        _generate(fresh_root)
        if opts.check:
            return _check(fresh_root)
        _write(fresh_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
