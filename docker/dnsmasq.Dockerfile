# dnsmasq as most hosts run it in front of the bridge: `consul` forwarded to the bridge.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends dnsmasq-base && rm -rf /var/lib/apt/lists/*
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--log-facility=-"]
