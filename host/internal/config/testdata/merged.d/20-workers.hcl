worker "first" {
  class = "echo"
}
