// Command smpp is a test-only plugin standing in for Vumi's SMPP transport:
// its class answers to the class name of the "Dynamic Workers" design note
// (vumi.workers.smpp.transport.SMPPTransport) and has that note's config,
// with the password marked sensitive. It connects to nothing; it runs, and
// reports its config in Status so tests can check the host converted and
// delivered it — including, carelessly, a bind URL with the password in it,
// as a real worker might, so tests can check the host scrubs it.
package main

import (
	"context"
	"os"

	"github.com/dynworkers/dynworkers/sdk"
)

type config struct {
	Host     string `config:"host,required" help:"SMSC host"`
	Port     int    `config:"port" default:"2775" help:"SMSC port"`
	Username string `config:"username" help:"system_id to bind with"`
	Password string `config:"password,sensitive" help:"password to bind with"`
	SystemID string `config:"system_id" help:"Vumi system id"`
}

type transport struct{ cfg config }

func (t *transport) Start(_ context.Context, env *sdk.Env) error {
	env.Logger().Info("smpp transport started", "host", t.cfg.Host, "port", t.cfg.Port, "username", t.cfg.Username)
	return nil
}

func (t *transport) Stop(context.Context) error { return nil }

func (t *transport) Status(context.Context) (map[string]any, error) {
	return map[string]any{
		"host": t.cfg.Host, "port": t.cfg.Port, "username": t.cfg.Username,
		"password_set": t.cfg.Password != "", "pid": os.Getpid(),
		"bind": "smpp://" + t.cfg.Username + ":" + t.cfg.Password + "@" + t.cfg.Host,
	}, nil
}

func main() {
	sdk.Serve(sdk.Class{
		Name:        "smpp",
		Aliases:     []string{"vumi.workers.smpp.transport.SMPPTransport", "vumi.transports.smpp.SmppTransport"},
		Description: "A stand-in for Vumi's SMPP transport (tests only).",
		Version:     "1.0.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			return &transport{cfg: cfg}, nil
		}),
	})
}
