system_id = "two"
host {
  name = "h2"
}
supervisor "root" {
  worker "w" {
    class = "echo"
  }
}
