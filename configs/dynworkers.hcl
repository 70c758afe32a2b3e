# The configuration `make run` uses: a host on the embedded default (no
# amqp block, so the workers' messages go through the in-process bus),
# running a telnet transport with the echo application, and a few hello
# workers from examples/hello-worker. After `make run`:
#
#   nc 127.0.0.1 2323        # every line you type comes back
#   open http://127.0.0.1:7780/ for the dashboard
#
# Paths are relative to this file's directory.

system_id = "dev"

host {
  plugin_dir = "../bin/plugins"
  state_dir  = "../var"
  http_addr  = "127.0.0.1:7780"
  log_level  = "info"

  # The embedded bus's queues are bounded (defaults shown): its ready
  # messages take at most 128 MiB of the host's memory. See "The embedded
  # bus" in docs/operator-guide.md.
  # bus {
  #   max_length       = 100000
  #   max_length_bytes = "32MiB"
  #   max_total_bytes  = "128MiB"
  #   overflow         = "drop-head"
  #   expires          = "30m"
  # }
}

# amqp { url = env("AMQP_URL") }   # uncomment to use RabbitMQ

supervisor "root" {
  strategy  = "one_for_one"
  intensity = 5
  period    = "30s"

  # A Vumi transport and an application on the same transport_name: the
  # telnet worker publishes each line to chat.inbound, echo replies on
  # chat.outbound, and telnet writes the reply to the connection.
  worker "telnet" {
    class = "telnet"
    config {
      transport_name = "chat"
      port           = 2323
    }
  }

  worker "echo" {
    class = "echo"
    config {
      transport_name = "chat"
    }
  }

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
