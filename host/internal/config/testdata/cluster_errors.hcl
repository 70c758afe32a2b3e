cluster {
  endpoints   = ["127.0.0.1", "ftp://etcd:2379"]
  prefix      = "dynworkers"
  lease_ttl   = "1500ms"
  max_workers = -2
  labels      = { "a b" = "x", zone = "" }
  username    = "u"
  lease_tll   = "4s"
  tls {
    insecure_skip_verify = true
  }
}
cluster {
  endpoints = ["127.0.0.1:2379"]
}
