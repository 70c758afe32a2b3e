host {
  name = "h"
}
worker "bad-port" {
  class = "smpp"
  config {
    host = "smsc"
    port = "abc"
  }
}
worker "string-port-is-fine" {
  class = "smpp"
  config {
    host = "smsc"
    port = "2773"
  }
}
worker "bad-collections" {
  class = "smpp"
  config {
    host   = ["a", "b"]
    tags   = "not-a-list"
    labels = { a = ["x"] }
  }
}
