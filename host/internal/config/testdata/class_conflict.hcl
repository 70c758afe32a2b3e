host {
  name = "h"
}
worker "w" {
  class = "dup"
}
