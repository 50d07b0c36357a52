# Stand-in for python:<version>-slim, made offline (no registry of container images is reachable
# here): Debian bookworm (debootstrap --variant=minbase) with Debian's python3, venv and pip.
# What differs from the official image: Debian's CPython 3.11 in /usr/bin (the official one is
# the tag's version built from source in /usr/local), and this machine's CA bundle, so pip
# reaches the package registry through the proxy the machine trusts.
FROM fieldserve-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    # the official image's python is not Debian's: pip may install into it (no PEP 668 marker)
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
COPY ca/ /usr/local/share/ca-certificates/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV LANG=C.UTF-8
CMD ["python3"]
