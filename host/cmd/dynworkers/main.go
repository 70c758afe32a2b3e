// Command dynworkers is the dynworkers supervisor host and its CLI. Run
// `dynworkers help` for the commands; everything lives in
// host/internal/cli.
package main

import (
	"os"

	"github.com/dynworkers/dynworkers/host/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
