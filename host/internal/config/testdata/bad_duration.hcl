host {
  name = "h"
}
supervisor "root" {
  period = "30"
  worker "w" {
    class            = "smpp"
    shutdown_timeout = "5 seconds"
    start_timeout    = "-1s"
    health_timeout   = 2
    backoff {
      initial = "fast"
    }
    config {
      host     = "smsc"
      interval = "5 seconds"
    }
  }
  worker "backwards" {
    class = "echo"
    backoff {
      initial = "1m"
      max     = "1s"
    }
  }
}
