host {
  name = "h"
}
worker "typo" {
  class = "smtp"
}
worker "alias-typo" {
  class = "vumi.workers.smpp.transport.SMPPTransprt"
}
worker "far" {
  class = "something.else.Entirely"
}
worker "conflict" {
  class = "dup"
}
