# Stand-in for nginx:<version>-alpine, made offline: Debian's nginx. Bookworm's 1.22 cannot
# read deploy/nginx.conf (`server ... resolve` in an upstream needs nginx 1.27.3 or newer), so
# the base is Debian unstable's, made by `debootstrap --variant=minbase --include=nginx,wget
# sid` (wget for the compose healthcheck, which busybox gives the official image). Like the
# official image: logs to the container's stdout and stderr, `nginx -g 'daemon off;'`, SIGQUIT.
FROM fieldserve-standin/debian:sid-nginx
RUN nginx -v \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
