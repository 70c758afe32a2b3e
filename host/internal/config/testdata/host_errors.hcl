system_id = "a b"
host {
  name       = "all"
  http_addr  = "7780"
  plugin_dir = ""
  start_concurrency = 0
  warm_spares = 99
}
host {
  name = "again"
}
amqp {
  url = "http://user:pw-SeKrEt@broker:5672/"
}
amqp {
}
