package cli

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// kill -9 of the host after a start was acked, then a new serve: the worker
// is back. A start published while no host runs is handled when the host
// comes up. Nothing a client was told succeeded is lost.
func TestKill9AfterAckedStartAndStartWhileDown(t *testing.T) {
	url := brokertest.URL(t)
	sys := brokertest.ID(t)
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, "cli-test"), control.AnyQueue(sys)}, nil)
	cfg := writeConfig(t, fmt.Sprintf("amqp {\n  url = %q\n}\n", url))
	// writeConfig's system_id is "test": give this test its own.
	replaceInFile(t, cfg, `system_id = "test"`, fmt.Sprintf("system_id = %q", sys))

	h := startServe(t, "-config", cfg)
	h.waitLine("connected to the broker")
	replyQ, replies := admin.TempQueue("")
	admin.Publish(control.ControlExchange, sys+".cli-test", amqp.Publishing{
		Body:    []byte(`{"operation": "vumi_worker", "worker_name": "acked", "worker_class": "chaos"}`),
		ReplyTo: replyQ, CorrelationId: "c1",
	})
	d := brokertest.Receive(t, replies, waitTimeout)
	var rep control.Reply
	if err := json.Unmarshal(d.Body, &rep); err != nil || !rep.OK {
		t.Fatalf("start reply %s: %v", d.Body, err)
	}
	kids := testplugins.Children(h.cmd.Process.Pid)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.wait()
	for _, pid := range kids {
		sdktest.Eventually(t, 5*time.Second, func() bool { return !testplugins.Alive(pid) },
			"plugin process %d alive 5s after the host was killed", pid)
	}

	// No host runs now; its durable queue keeps this start.
	admin.Publish(control.ControlExchange, sys+".cli-test", amqp.Publishing{
		Body: []byte(`{"operation": "vumi_worker", "worker_name": "while-down", "worker_class": "chaos"}`),
	})

	h2 := startServe(t, "-config", cfg)
	h2.waitLine("worker_started: worker=acked")
	h2.waitLine("worker_started: worker=while-down")
}
