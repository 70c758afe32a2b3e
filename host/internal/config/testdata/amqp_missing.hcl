host {
  name = "h"
}
amqp {
}
