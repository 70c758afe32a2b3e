system_id = "merged"
host {
  name      = "merged-host"
  state_dir = "state"
}
