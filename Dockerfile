# Image of our services; docker-compose.yml runs it as `hotline ivr`, `hotline acd`,
# `hotline cti`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs: no .git, no local data. README* may be absent.
COPY pyproject.toml setup.cfg README* ./
COPY hotline ./hotline
COPY pbxsim ./pbxsim
COPY ivr ./ivr
COPY acd ./acd
COPY cti ./cti
COPY recordings ./recordings
COPY launcher ./launcher
COPY bench ./bench
RUN pip install . && rm -rf /src

# An unprivileged user: the services bind ports above 1024 only.
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/hotline hotline
USER hotline
WORKDIR /var/lib/hotline
ENV HOTLINE_DATA_DIR=/var/lib/hotline

ENTRYPOINT ["hotline"]
CMD ["--help"]
