host {
  name = "h"
}
worker "w" {
  class = "smpp"
  config {
    host     = "smsc"
    password = file("files/secret.txt")
    username = file("files/missing.txt")
  }
}
