system_id = "prod"
host {
  name = "host-a"
}
cluster {
  endpoints    = ["127.0.0.1:2379", "127.0.0.2:2379"]
  lease_ttl    = "6s"
  dial_timeout = "3s"
  max_workers  = 20
  labels       = { zone = "a", "rack.id" = "r-12" }
}
worker "w" {
  class = "echo"
}
