# No secret may appear in the output, not even in source lines.
host {
  name = "h"
}
worker "v1" {
  class = "vault"
  config {
    token  = ["list-SeKrEt"]
    pin    = "pin-SeKrEt"
    rotate = "rot-SeKrEt"
  }
}
worker "v2" {
  class = "vault"
  config {
    token  = tonumber("fn-SeKrEt")
    pin    = tonumber(env("SMPP_PASSWORD"))
    rotate = "-5s"
  }
}
worker "v3" {
  class = "vault"
  config { token = "inline-SeKrEt" }
  unknown = 1
}
worker "v4" {
  class = "vault"
  config {
    token  = env("SMPP_PASSWORD")
    rotate = trimspace(file("files/secret.txt"))
  }
}
worker "v5" {
  class = "vault"
  config { pin = "1234-SeKrEt" }
}
