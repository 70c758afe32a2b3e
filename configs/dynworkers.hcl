# The configuration `make run` uses: a host on the embedded default (no
# amqp block), running a few hello workers from examples/hello-worker.
# Paths are relative to this file's directory.

system_id = "dev"

host {
  plugin_dir = "../bin/plugins"
  state_dir  = "../var"
  http_addr  = "127.0.0.1:7780"
  log_level  = "info"
}

# amqp { url = env("AMQP_URL") }   # uncomment to use RabbitMQ

supervisor "root" {
  strategy  = "one_for_one"
  intensity = 5
  period    = "30s"

  worker "greeter" {
    class = "hello"
    config {
      greeting = "hello"
      name     = "operator"
      interval = "5s"
    }
  }

  worker "bonjour" {
    class   = "hello"
    restart = "permanent"
    config {
      greeting = "bonjour"
      name     = "le monde"
      interval = "7s"
    }
  }

  worker "hola" {
    class            = "examples.hello"   # an alias works too
    shutdown_timeout = "2s"
    backoff {
      initial = "100ms"
      max     = "10s"
    }
    config {
      greeting = "hola"
      interval = "11s"
    }
  }
}
