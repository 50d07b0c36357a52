# Stand-in for redis:<version>-alpine, made offline: Debian bookworm's redis-server and
# redis-cli. Like the official image: user redis, /data, an entrypoint that drops root and
# takes bare options as redis-server's. The official image builds Redis with protected mode
# off by default; Debian's keeps it on, which refuses every client from another container when
# no password is set ("DENIED Redis is running in protected mode"), so the entrypoint turns
# it off unless the command sets it.
FROM fieldserve-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
