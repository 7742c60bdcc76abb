# dnsmasq as most hosts run it in front of the bridge: `consul` forwarded to the bridge, found
# by its name on the compose network (dnsmasq's --server takes an address, not a name).
# Installs dnsmasq-base unless the base image has it already (an offline base built with it).
FROM debian:bookworm-slim
RUN command -v dnsmasq >/dev/null || (apt-get update && apt-get install -y --no-install-recommends dnsmasq-base && rm -rf /var/lib/apt/lists/*)
ENV BRIDGE_HOST=bridge BRIDGE_PORT=8653
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["/bin/sh", "-c", "until bridge=$(getent hosts \"$BRIDGE_HOST\" | cut -d' ' -f1) && [ -n \"$bridge\" ]; do sleep 1; done; exec dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --log-facility=- --server=/consul/$bridge#$BRIDGE_PORT \"$@\"", "dnsmasq"]
