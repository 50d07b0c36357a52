#!/bin/sh
# The stand-in redis image's entrypoint (see redis.Dockerfile).
set -e
# Bare options, or a config file first, are redis-server's (as in the official image).
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
        conf=$1
        shift
        set -- "$conf" --protected-mode no "$@"
    else
        set -- --protected-mode no "$@"
    fi
    set -- /usr/bin/redis-server "$@"
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
