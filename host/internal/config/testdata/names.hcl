host {
  name = "h"
}
supervisor "root" {
  worker "../../bin/sh" {
    class = "echo"
  }
  worker "" {
    class = "echo"
  }
  worker "bell\u0007name" {
    class = "echo"
  }
  worker " padded" {
    class = "echo"
  }
  worker ".." {
    class = "echo"
  }
  supervisor "a/b" {
  }
}
