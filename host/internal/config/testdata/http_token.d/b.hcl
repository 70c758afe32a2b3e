worker "w" {
  class = "echo"
}
