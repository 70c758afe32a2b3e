# Host 2 of the three-host cluster of docs/cluster.md ("Walkthrough"):
# three hosts on one machine, one etcd on loopback. Run from the
# repository root after `make build`:
#
#   bin/dynworkers serve -config examples/cluster/host-2.hcl
#
# Relative paths are relative to this file.
system_id = "demo"

host {
  name       = "host-2"
  plugin_dir = "../../bin/plugins"
  state_dir  = "../../var/cluster/host-2"
  http_addr  = "127.0.0.1:7782"
}

# Uncomment on all three to route control messages through RabbitMQ
# (demo.any, demo.host-2): see docs/control-protocol.md.
# amqp {
#   url = env("AMQP_URL")
# }

cluster {
  endpoints   = ["http://127.0.0.1:2379"]
  lease_ttl   = "10s"         # the default: a dead host's workers move after 10 s
  max_workers = 20            # cluster workers this host takes at most (0: no limit)
  labels      = { zone = "a" }
  # In production: etcd auth and TLS, and a key that seals secrets in etcd.
  # username         = "dynworkers"
  # password_file    = "/etc/dynworkers/etcd-password"
  # secrets_key_file = "/etc/dynworkers/cluster.key"
  # tls {
  #   ca_file   = "/etc/dynworkers/etcd-ca.pem"
  #   cert_file = "/etc/dynworkers/etcd-client.pem"
  #   key_file  = "/etc/dynworkers/etcd-client.key"
  # }
}
