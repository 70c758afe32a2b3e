host {
  name      = "h"
  log_level = "verbose"
}
supervisor "root" {
  strategy  = "one_for_al"
  intensity = 2.5
  worker "w" {
    class   = "echo"
    restart = "always"
  }
  supervisor "s" {
    strategy  = "round_robin"
    intensity = -1
  }
}
