system_id = "one"
host {
  name = "h"
}
worker "w" {
  class = "echo"
}
