# Consul from a binary beside this file, for machines that cannot pull the upstream image: the
# compose file's CONSUL_IMAGE then names this one. E.g. with Debian's `consul` package (1.8.7,
# bullseye): `scripts/install-consul.sh DIR`, then
#   docker build -f docker/consul.Dockerfile -t localhost/consul:debian DIR
# (DIR holds the `consul` binary). It runs as the upstream image does: `consul agent ...`.
FROM debian:bookworm-slim
COPY consul /usr/local/bin/consul
RUN mkdir -p /consul/data /consul/config
ENTRYPOINT ["/usr/local/bin/consul"]
