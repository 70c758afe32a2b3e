host {
  name = env("DYNWORKERS_TEST_UNSET", "default-host")
}
worker "w" {
  class = "smpp"
  config {
    host     = env("DYNWORKERS_TEST_UNSET")
    username = env("DYNWORKERS_TEST_UNSET", "fallback")
    password = env("SMPP_PASSWORD")
    tags     = [env("DYNWORKERS_TEST_UNSET", "")]
  }
}
