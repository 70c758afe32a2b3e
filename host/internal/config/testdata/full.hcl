# The example of DESIGN §4.
system_id = "global"
host {
  name       = "host-1"
  plugin_dir = "./bin/plugins"
  state_dir  = "./var"
  http_addr  = "127.0.0.1:7780"
  log_level  = "debug"
  start_concurrency = 8
  warm_spares = 2
}
amqp {
  url = env("AMQP_URL")
}
supervisor "root" {
  strategy  = "one_for_one"
  intensity = 5
  period    = "30s"
  worker "SMPP Transport for account1" {
    class            = "vumi.transports.smpp.SmppTransport"
    restart          = "permanent"
    shutdown_timeout = "5s"
    start_timeout    = "1m"
    health_interval  = "10s"
    health_timeout   = "3s"
    backoff {
      initial     = "10ms"
      max         = "30s"
      reset_after = "1m"
    }
    config {
      host     = "smpp.host.com"
      port     = "2775"
      password = env("SMPP_PASSWORD")
      username = upper(format("%s-%d", "acct", 1))
      tags     = split(",", "a,b")
      labels   = { region = "eu", tier = "gold" }
    }
  }
  supervisor "campaign-a" {
    strategy = "one_for_all"
    worker "a1" { class = "echo" }
    worker "a2" {
      class   = "echo"
      restart = "transient"
      config {
        prefix = trimspace("  a2: ")
      }
    }
    supervisor "nested" {
      strategy = "rest_for_one"
      worker "n1" {
        class   = "vault"
        restart = "temporary"
        config {
          token  = trimspace(file("files/secret.txt"))
          pin    = 1234
          rotate = "1h"
        }
      }
    }
  }
}
