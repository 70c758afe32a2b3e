# Top-level workers join the implicit root; everything else is defaulted.
host {
  name = "h1"
}
worker "echo-1" {
  class = "echo"
}
worker "smpp-1" {
  class = "smpp"
  config {
    host = "localhost"
  }
}
