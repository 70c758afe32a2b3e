package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// watchOptions are how status -watch shows its frames.
type watchOptions struct {
	interval time.Duration
	terminal bool // clear the screen and home the cursor before each frame
	color    bool
	json     bool
	cluster  bool // status -cluster: the cluster_status view
}

// clearScreen homes the cursor and clears the screen.
const clearScreen = "\x1b[H\x1b[2J"

// watchStatus asks for the status every interval and prints each answer
// as a frame, until ctx ends (SIGINT or SIGTERM); then it returns exitOK.
// A poll that fails shows the error in its frame, and the next one is
// tried an interval later.
//
// On a terminal each frame replaces the previous one; elsewhere frames
// follow each other, a blank line apart (with -json: a stream of JSON
// documents, errors on stderr).
func (o *clientOptions) watchStatus(ctx context.Context, stdout, stderr io.Writer, wo watchOptions) int {
	p := &poller{o: o, c: statusCall()}
	if wo.cluster {
		p.c = clusterStatusCall()
	}
	defer p.close()
	p1 := painter(wo.color)
	var notes bytes.Buffer // what the first poll had to say about -config
	var lastOK time.Time
	for frame := 0; ; frame++ {
		w := io.Writer(io.Discard)
		if frame == 0 {
			w = &notes
		}
		answers, err := p.poll(ctx, w)
		if ctx.Err() != nil {
			return exitOK
		}
		if frame == 0 && !wo.terminal {
			stderr.Write(notes.Bytes())
		}
		at := now()
		ok := err == nil
		for _, a := range answers {
			ok = ok && a.reply.OK
		}
		if ok {
			lastOK = at
		}

		var b bytes.Buffer
		switch {
		case wo.terminal:
			b.WriteString(clearScreen)
			b.Write(notes.Bytes())
		case frame > 0 && !wo.json:
			b.WriteString("\n")
		}
		switch {
		case err != nil && wo.json:
			fmt.Fprintf(stderr, "dynworkers status: %v\n", err)
		case err != nil:
			fmt.Fprintf(&b, "%s %v\n", p1.paint(ansiRed, "error:"), err)
		}
		for _, a := range answers {
			switch {
			case a.reply.OK:
				if wo.cluster {
					printClusterResult(&b, a.reply.Result, wo.json)
				} else {
					printResult(&b, a.reply.Result, wo.json, wo.color)
				}
			case wo.json:
				printError(stderr, "dynworkers status: ", a.reply.Error)
			default:
				printError(&b, p1.paint(ansiRed, "error:")+" ", a.reply.Error)
			}
		}
		if !wo.json || wo.terminal {
			b.WriteString(p1.paint(ansiDim, footer(at, lastOK, ok, wo.interval)) + "\n")
		}
		if _, err := stdout.Write(b.Bytes()); err != nil {
			fmt.Fprintf(stderr, "dynworkers status: %v\n", err)
			return 1 // nowhere to show the frames
		}
		if !sleep(ctx, wo.interval) {
			return exitOK
		}
	}
}

// footer says when the frame was taken and when the next one comes.
func footer(at, lastOK time.Time, ok bool, every time.Duration) string {
	var s strings.Builder
	if ok {
		s.WriteString("refreshed " + at.Format(time.TimeOnly))
	} else {
		s.WriteString("refresh failed at " + at.Format(time.TimeOnly))
		if !lastOK.IsZero() {
			s.WriteString(" (last success " + lastOK.Format(time.TimeOnly) + ")")
		}
	}
	fmt.Fprintf(&s, " · every %s · Ctrl-C to stop", every)
	return s.String()
}

// sleep waits d, or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// poller sends one request after another to the host the flags name.
// Over AMQP it keeps its connection from one request to the next, and
// makes a new one after a failure.
type poller struct {
	o    *clientOptions
	c    call
	sess *amqpSession
}

func (p *poller) poll(ctx context.Context, notes io.Writer) ([]answer, error) {
	if p.o.amqpURL == "" {
		return p.o.fetch(ctx, p.c, notes)
	}
	key := p.o.routingKey(notes)
	if p.sess == nil {
		s, err := p.o.dialAMQP(ctx)
		if err != nil {
			return nil, err
		}
		p.sess = s
	}
	answers, err := p.sess.request(ctx, key, p.c.message)
	if err != nil {
		p.close()
	}
	return answers, err
}

func (p *poller) close() {
	if p.sess != nil {
		p.sess.close()
		p.sess = nil
	}
}
