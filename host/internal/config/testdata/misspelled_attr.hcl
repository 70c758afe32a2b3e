host {
  name = "h"
}
worker "smpp" {
  class = "smpp"
  config {
    host     = "smsc"
    prot     = 2775
    usrename = "me"
  }
}
