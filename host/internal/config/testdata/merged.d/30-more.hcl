worker "second" {
  class = "vumi.workers.smpp.transport.SMPPTransport"
  config {
    host = "smsc"
    port = 2776
  }
}
