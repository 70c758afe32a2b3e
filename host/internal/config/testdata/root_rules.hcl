host {
  name = "h"
}
supervisor "main" {
  worker "inside" {
    class = "echo"
  }
}
supervisor "other" {
}
worker "outside" {
  class = "echo"
}
