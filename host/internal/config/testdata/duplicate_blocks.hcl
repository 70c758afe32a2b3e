host {
  name = "h"
}
worker "w" {
  class = "echo"
  config {
  }
  config {
  }
  backoff {
  }
  backoff {
  }
}
