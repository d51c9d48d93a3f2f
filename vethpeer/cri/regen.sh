#!/bin/sh
# Regenerate the CRI bindings from api.proto (see the header of api.proto).
# Needs: pip install grpcio-tools==1.85.1 mypy-protobuf==5.1.0
# Run from anywhere; writes api_pb2.py, api_pb2.pyi, api_pb2_grpc.py and
# api_pb2_grpc.pyi next to api.proto.
set -eu
cd "$(dirname "$0")/../.."
python -m grpc_tools.protoc -I vethpeer/cri \
    --python_out=vethpeer/cri \
    --grpc_python_out=vethpeer/cri \
    --plugin=protoc-gen-mypy="$(python -c 'import shutil,sys; print(shutil.which("protoc-gen-mypy") or sys.exit("protoc-gen-mypy not found: pip install mypy-protobuf"))')" \
    --mypy_out=vethpeer/cri \
    --plugin=protoc-gen-mypy_grpc="$(python -c 'import shutil,sys; print(shutil.which("protoc-gen-mypy_grpc") or sys.exit("protoc-gen-mypy_grpc not found: pip install mypy-protobuf"))')" \
    --mypy_grpc_out=vethpeer/cri \
    vethpeer/cri/api.proto
# grpc_tools and mypy-protobuf emit top-level imports of api_pb2; make them
# package-relative so the modules work as vethpeer.cri.*.
sed -i 's/^import api_pb2 as api__pb2$/from . import api_pb2 as api__pb2/' \
    vethpeer/cri/api_pb2_grpc.py
sed -i 's/^import api_pb2 as _api_pb2$/from . import api_pb2 as _api_pb2/' \
    vethpeer/cri/api_pb2_grpc.pyi
grep -q '^from \. import api_pb2 as api__pb2$' vethpeer/cri/api_pb2_grpc.py
grep -q '^from \. import api_pb2 as _api_pb2$' vethpeer/cri/api_pb2_grpc.pyi
if grep -q '^import api_pb2' vethpeer/cri/api_pb2_grpc.py vethpeer/cri/api_pb2_grpc.pyi; then
    echo "regen.sh: unfixed top-level import of api_pb2" >&2
    exit 1
fi
