host {
  name = var.name
}
worker "w" {
  class = "echo"
  config {
    prefix = "${system_id}-"
  }
}
