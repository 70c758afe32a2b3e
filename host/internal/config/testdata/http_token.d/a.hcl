# Binding beyond loopback needs a token; a short token is refused and never
# echoed.
host {
  http_addr = "0.0.0.0:7780"
}
