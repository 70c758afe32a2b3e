host {
  name = "h"
}
supervisor "root" {
  worker "w1" {
    class = "echo"
  }
  supervisor "team" {
    worker "w1" {
      class = "echo"
    }
    worker "team" {
      class = "echo"
    }
    supervisor "root" {
    }
  }
}
