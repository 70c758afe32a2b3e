host {
  name = "h"
  limits {
    memory = "lots"
    pids   = 64
  }
}
worker "units" {
  class = "echo"
  limits {
    memory     = 268435456
    pids       = 8
    cpu        = 0
    open_files = 1.5
  }
}
worker "negative" {
  class = "echo"
  limits {
    memory     = "-1GiB"
    pids       = -1
    cpu        = -0.5
    open_files = 10
    swap       = "1GiB"
  }
}
worker "small" {
  class = "echo"
  limits {
    memory = "1MiB"
    cpu    = 5000
  }
  limits {
    pids = 32
  }
}
