package daemon

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/tree"
)

// DetailsTimeout bounds how long status waits for the workers' own Status()
// answers (sdk.StatusReporter). The workers are asked in parallel, so a
// status reply takes at most this long more than without details, however
// many workers hang; a worker that did not answer in time shows
// details_error instead.
var DetailsTimeout = 500 * time.Millisecond

// fillDetails asks every running worker of ws (infos are the same workers
// as the tree listed them) for its Status() details, in parallel and within
// DetailsTimeout, and sets Details (scrubbed of the worker's sensitive
// config values) or DetailsError.
func fillDetails(ctx context.Context, ws []api.Worker, infos []tree.WorkerInfo) {
	ctx, cancel := context.WithTimeout(ctx, DetailsTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range ws {
		w, info := &ws[i], infos[i]
		p := info.Process()
		if p == nil || w.State != string(supervise.StateRunning) {
			continue
		}
		wg.Go(func() { w.Details, w.DetailsError = workerDetails(ctx, p, info.Spec) })
	}
	wg.Wait()
}

// workerDetails is one worker's answer to Status, scrubbed, or why there is
// none. An empty object (a worker that reports nothing) is no details.
func workerDetails(ctx context.Context, p *pluginproc.Process, cfg *config.Worker) ([]byte, string) {
	raw, err := p.Status(ctx)
	if err != nil {
		// The plugin's side gives up at the same deadline (gRPC carries
		// it), and its cancellation may arrive a moment before the host's
		// own timer fires: an error that close to the deadline is the
		// deadline's.
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && time.Until(dl) < 50*time.Millisecond {
			return nil, "the worker did not answer within " + DetailsTimeout.String()
		}
		// The error text comes from the plugin: scrub it too.
		if msg, ok := config.ScrubJSON(jsonString(err.Error()), cfg.Secrets()); ok {
			return nil, unquote(msg)
		}
		return nil, "the worker's status failed"
	}
	out, ok := config.ScrubJSON(raw, cfg.Secrets())
	if !ok {
		return nil, "the worker sent invalid status details"
	}
	if string(out) == "{}" || string(out) == "null" {
		return nil, ""
	}
	return out, ""
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func unquote(b []byte) string {
	var s string
	_ = json.Unmarshal(b, &s)
	return s
}
