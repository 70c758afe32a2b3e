host {
  http_addr  = "0.0.0.0:7780"
  http_token = "SeKrEt-short"
}
