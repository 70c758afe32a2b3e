# Several errors in one config: all are reported at once.
host {
  name = "h"
}
worker "w" {
  class   = "smpp"
  restart = "sometimes"
  config {
    port     = "abc"
    prot     = 1
    interval = "often"
    password = 42
  }
}
worker "w" {
  class = "nope"
}
worker "x" {
  class = "smpp"
  config {
    host = null
    port = "abc"
  }
}
