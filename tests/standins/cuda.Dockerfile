# Stand-in for nvidia/cuda:<version>-cudnn-runtime-ubuntu<version>, made offline; NOT a
# faithful one: Ubuntu's archive and NVIDIA's CUDA and cuDNN packages are out of reach, so this
# is Debian bookworm with this machine's CA bundle and no CUDA libraries. The GPU image builds on
# it (apt-get, python3, venv, onnxruntime-gpu from PyPI and its provider check all run), but
# it cannot run graphs on a GPU: the deployment test builds it and does not start it.
FROM fieldserve-standin/debian:bookworm
COPY ca/ /usr/local/share/ca-certificates/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
CMD ["bash"]
