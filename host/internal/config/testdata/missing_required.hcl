host {
  name = "h"
}
worker "no-host" {
  class = "smpp"
  config {
    port = 2775
  }
}
worker "no-config" {
  class = "smpp"
}
worker "no-class" {
  restart = "permanent"
}
worker "null-host" {
  class = "smpp"
  config {
    host = null
  }
}
