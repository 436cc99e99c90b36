# syntax=docker/dockerfile:1
# policy-engine's command line as a container, for CI systems without a Python step (docs/ci.md).
# The entrypoint is `policy-engine` and the default command `check`; the project is mounted at
# the working directory /work. Build it from the repository root:
#   docker build -f deploy/check.Dockerfile -t policy-engine-check:0.1.0 .
# and run it in a project:
#   docker run --rm -v "$PWD:/work" policy-engine-check:0.1.0
#   docker run --rm -v "$PWD:/work" -u "$(id -u):$(id -g)" policy-engine-check:0.1.0 \
#       test --junit policy-tests.xml
# deploy/check.Dockerfile.dockerignore keeps the context to what the build reads.

# Both stages must run the same CPython minor version: the wheel holds C extensions for it.
ARG PYTHON_VERSION=3.11

# Stage 1: the wheel, compiled with mypyc as in deploy/Dockerfile (replay and plan --sample
# evaluate every sample payload, and run two to three times faster compiled). The full python
# image has the compiler and headers; the glob fails the build if the wheel came out pure Python.
FROM python:${PYTHON_VERSION}-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY engine ./engine
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && ls /wheels/policy_engine-*-cp3*-linux_*.whl

# Stage 2: slim, with the wheel, its dependencies and git (plan and check --base read the base
# revision with git show).
FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# git is not pinned: Debian replaces a version when it ships a security fix, so a pin would
# break the build at the next point release instead of making it reproducible. safe.directory:
# the mounted repository belongs to the host's user, not the container's, and git refuses to
# read such a repository otherwise.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/policy_engine-*.whl
# A numeric user without a home: it reads the mounted project; for commands that write into it
# (test --junit, replay --html), run with --user "$(id -u):$(id -g)" (GitLab's builds directory
# is writable by any user).
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["policy-engine"]
CMD ["check"]
