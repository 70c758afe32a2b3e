// Package config loads the host's HCL configuration (DESIGN §4) and decodes
// worker configs with the schema their class declares.
//
// Loading is two steps, because the worker `config {}` bodies can only be
// decoded once the plugin catalog knows every class's schema:
//
//   - [Parse] reads one file, or every *.hcl file of a directory merged in
//     lexical order, and decodes system_id, host, amqp and the
//     supervisor/worker tree (names, strategies, restart policies, timeouts).
//   - [File.Decode] resolves every worker's class with a [ClassResolver] and
//     decodes its config body with [Spec] of the class's schema.
//
// [Load] does both. Every step keeps going after an error, so one run reports
// all the problems of a configuration at once, each as an HCL diagnostic with
// file:line:col; [FormatDiagnostics] prints them.
//
// # The tree
//
// The host's root is a supervisor named "root". It is written either
// implicitly, by top-level worker blocks, or explicitly as exactly one
// top-level `supervisor "root" { ... }` block; a configuration cannot mix the
// two (top-level workers next to an explicit root are an error), so there is
// always one obvious place where a worker lives. Paths join names with "/":
// "root/campaign-a/a1".
//
// Names of workers and supervisors are unique in the whole host (they share
// one namespace, so a name alone identifies a node in control messages),
// must not be empty, must not contain "/", control or invisible characters
// (bidi overrides, zero-width characters, spaces but U+0020), must not be
// "." or "..", and must not start or end with white space; see
// [ValidateName]. "root" names the root supervisor only
// ([ValidateWorkerName]). Supervisors nest at most [MaxDepth] levels; a
// worker's config is bounded by [MaxConfigBytes] and [MaxConfigValueBytes];
// the input_limits block sets the others ([InputLimits]).
//
// # Defaults
//
//	system_id                  "global"
//	host.name                  os.Hostname()
//	host.plugin_dir            "./bin/plugins"  (relative to the file's directory)
//	host.state_dir             "./var"          (relative to the file's directory)
//	host.exec_dir              "<state_dir>/exec" (relative to the file's
//	                           directory; not on a noexec filesystem)
//	host.http_addr             "127.0.0.1:7780"
//	host.log_level             "info"           (trace|debug|info|warn|error)
//	host.log_lines             1000             (lines kept of each worker's log)
//	host.log_files             absent: no files; the block's dir "./logs"
//	                           (relative to its file's directory), max_size
//	                           "10MiB", backups 5
//	host.bus                   absent: the embedded bus's defaults, max_length
//	                           100000, max_length_bytes "32MiB",
//	                           max_total_bytes "128MiB", overflow "drop-head",
//	                           expires "30m"; refused next to an amqp block
//	amqp                       absent: no broker
//	cluster                    absent: the host is alone (see ClusterConfig)
//	cluster.prefix             "/dynworkers/<system_id>/"
//	cluster.lease_ttl          "10s" (from 2s to 5m, whole seconds)
//	cluster.dial_timeout       "5s" (at most 1m)
//	cluster.max_workers        0: no limit
//	supervisor strategy        "one_for_one", intensity 5, period "30s"
//	worker restart             "permanent"
//	worker start_timeout       "30s", shutdown_timeout "5s"
//	worker health_interval     "5s", health_timeout "2s"
//	worker backoff             initial "10ms", max "30s", reset_after "10s"
//
// Every duration must be greater than zero, and backoff max must not be
// smaller than initial.
//
// # Functions
//
// Expressions can call env("NAME") (an error names the variable when it is
// unset, unless a default is given: env("NAME", "default")), file("path")
// (relative to the directory of the file that calls it) and the usual string,
// number and collection helpers of cty's stdlib; see [Functions].
//
// # Sensitive values
//
// Attributes a class marks sensitive, and the amqp url, never appear in
// diagnostics (nor does the cluster block's etcd password, read from
// password_file: ClusterConfig prints it redacted): their values are scrubbed from messages and the source line
// is not shown. [Worker.RedactedConfig] and [AMQPConfig.Redacted] give
// printable forms.
package config
