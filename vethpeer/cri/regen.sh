#!/bin/sh
# Regenerate the CRI bindings from api.proto (see the header of api.proto).
# Needs: pip install grpcio-tools==1.85.1 mypy-protobuf==5.1.0
# Run from anywhere; writes protobuf's messages api_pb2.py and api_pb2.pyi (the oracle of
# vethpeer/cri/messages.py, which the package uses) and grpcio's stubs api_pb2_grpc.py and
# api_pb2_grpc.pyi into tests/lab/: only the tests use protobuf and grpcio (the package reads
# its messages and speaks gRPC with its own code).
#   PYTHON                the interpreter that has grpcio-tools (default: python3)
#   PROTOC_GEN_MYPY       mypy-protobuf's plugins (default: next to $PYTHON's scripts,
#   PROTOC_GEN_MYPY_GRPC  e.g. the venv's bin, else on PATH)
set -eu
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
plugin() {
    "$PYTHON" - "$1" <<'PY'
import os, shutil, sys, sysconfig
name = sys.argv[1]
for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
    path = os.path.join(folder, name)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        sys.exit(print(path))
print(shutil.which(name) or sys.exit(f"{name} not found: pip install mypy-protobuf"))
PY
}
MYPY_PLUGIN=${PROTOC_GEN_MYPY:-$(plugin protoc-gen-mypy)}
MYPY_GRPC_PLUGIN=${PROTOC_GEN_MYPY_GRPC:-$(plugin protoc-gen-mypy_grpc)}
mkdir -p tests/lab
"$PYTHON" -m grpc_tools.protoc -I vethpeer/cri \
    --python_out=tests/lab \
    --grpc_python_out=tests/lab \
    --plugin=protoc-gen-mypy="$MYPY_PLUGIN" \
    --mypy_out=tests/lab \
    --plugin=protoc-gen-mypy_grpc="$MYPY_GRPC_PLUGIN" \
    --mypy_grpc_out=tests/lab \
    vethpeer/cri/api.proto
# grpc_tools and mypy-protobuf emit top-level imports of api_pb2; make them
# import the tests' messages, tests.lab.api_pb2.
sed -i 's/^import api_pb2 as api__pb2$/from tests.lab import api_pb2 as api__pb2/' \
    tests/lab/api_pb2_grpc.py
sed -i 's/^import api_pb2 as _api_pb2$/from tests.lab import api_pb2 as _api_pb2/' \
    tests/lab/api_pb2_grpc.pyi
grep -q '^from tests\.lab import api_pb2 as api__pb2$' tests/lab/api_pb2_grpc.py
grep -q '^from tests\.lab import api_pb2 as _api_pb2$' tests/lab/api_pb2_grpc.pyi
if grep -q '^import api_pb2' tests/lab/api_pb2_grpc.py tests/lab/api_pb2_grpc.pyi; then
    echo "regen.sh: unfixed top-level import of api_pb2" >&2
    exit 1
fi
