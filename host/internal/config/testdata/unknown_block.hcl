host {
  name = "h"
  plugins = "./p"
}
workers "w0" {
  class = "echo"
}
worker "w1" {
  class = "echo"
  backof {
    initial = "1s"
  }
  confg {
  }
  config {
    prefix = "x"
    nested {
    }
  }
}
