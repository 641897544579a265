"""Build hook: generate the gRPC stubs from proto/fedgrad.proto (never hand-edited, never committed)."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
PROTO = ROOT / "proto" / "fedgrad.proto"
OUT = ROOT / "fedgrad" / "transport"


def generate_stubs() -> None:
    from grpc_tools import protoc  # build-time requirement (pyproject [build-system])

    args = ["grpc_tools.protoc", f"-I{PROTO.parent}", f"--python_out={OUT}", f"--pyi_out={OUT}",
            f"--grpc_python_out={OUT}", str(PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    grpc_file = OUT / "fedgrad_pb2_grpc.py"
    # protoc writes an absolute import; the stubs live inside the fedgrad.transport package.
    grpc_file.write_text(grpc_file.read_text().replace("import fedgrad_pb2 as", "from . import fedgrad_pb2 as"))


class BuildPyWithProto(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProto})
