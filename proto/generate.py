"""Regenerate the Python stubs in packages/common/src/grpo/v1 from proto/grpo/v1/*.proto.

Run `uv run python proto/generate.py` after editing a .proto file and commit the result.
tests/test_generated_stubs.py fails while the committed stubs differ from what this produces,
so the contract and the code cannot drift apart. Generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "packages" / "common" / "src"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "grpo" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write grpo/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py under out_dir."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    (out_dir / "grpo" / "v1").mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    for package_dir in (out_dir / "grpo", out_dir / "grpo" / "v1"):
        init = package_dir / "__init__.py"
        init.write_text('"""Generated from proto/grpo/v1 by proto/generate.py. Do not edit."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory that receives grpo/v1/")
    generate(parser.parse_args().out)
    print(f"stubs written under {parser.parse_args().out / 'grpo' / 'v1'}", file=sys.stderr)


if __name__ == "__main__":
    main()
