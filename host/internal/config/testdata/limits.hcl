host {
  name = "h"
  limits {
    memory     = "512MiB"
    pids       = 128
    open_files = 4096
  }
}
worker "default" {
  class = "echo"
}
worker "own" {
  class = "echo"
  limits {
    memory = "1.5GiB"
    cpu    = 0.5
  }
}
worker "decimal" {
  class = "echo"
  limits {
    memory = "300MB"
    pids   = 64
  }
}
