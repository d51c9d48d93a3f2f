# The vethpeer node agent: `vethpeer serve` in a container (deploy/kubernetes/, docs/cluster.md).
#
# The build needs no network: vethpeer and its dependencies come in as wheels.
#   python3 -m pip wheel --wheel-dir wheels .
#   docker build -t vethpeer:dev .
# BASE is any Debian-like image with python3 and python3-venv; the tests build one from Debian
# packages with debootstrap (tests/lab/agent_image.py) because no image registry is reachable there.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN python3 -c "import ensurepip, venv" 2>/dev/null || { \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; }
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/vethpeer \
    && /opt/vethpeer/bin/python -m pip install --no-index --no-cache-dir --find-links /tmp/wheels vethpeer \
    && rm -rf /tmp/wheels \
    && /opt/vethpeer/bin/python -m compileall -q /opt/vethpeer >/dev/null
ENV PATH=/opt/vethpeer/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Root, but with only the capabilities the DaemonSet adds (SYS_ADMIN, SYS_PTRACE); see docs/cluster.md.
USER 0:0
EXPOSE 10098
ENTRYPOINT ["vethpeer", "serve"]
CMD ["--listen", "0.0.0.0:10098"]
