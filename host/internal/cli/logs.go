package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
)

// Follow settings of the logs command.
const (
	// logsPollInterval is how often logs -f asks over AMQP for the lines
	// after the last one it printed.
	logsPollInterval = 500 * time.Millisecond
	// logsStreamSilence is how long logs -f over HTTP waits for anything
	// (a line or the API's keep-alive, every 15s) before it takes the host
	// for gone.
	logsStreamSilence = 3 * httpapi.DefaultLogKeepAlive
	// maxLogLineBytes bounds one line of the follow stream.
	maxLogLineBytes = 1 << 20
)

// logsFlags are the flags of the logs command besides the client ones.
type logsFlags struct {
	lines  int
	since  string
	follow bool
	json   bool
}

// runLogs prints the last lines of a worker's log, and with -f follows it:
// over HTTP through the API's NDJSON stream (GET
// /v1/workers/NAME/logs?follow=1), over AMQP by asking every
// logsPollInterval for the lines after the last one printed. The follow
// goes on across restarts of the worker (the host writes a marker line for
// each); it ends with Ctrl-C (exit 0), or when the host goes away (the
// stream ends, a poll fails): that is said on stderr and the exit status
// is 3, so that a script can start it again once the host is back.
func runLogs(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("logs", "NAME [-n N] [-since T] [-f] [-json] "+clientFlagsUsage, stderr)
	var lf logsFlags
	fs.IntVar(&lf.lines, "n", control.DefaultLogLines, fmt.Sprintf("how many of the last lines to print (1 to %d)", control.MaxLogLines))
	fs.StringVar(&lf.since, "since", "", "only the lines since a time: RFC 3339 (2026-12-03T16:40:00Z) or a duration back from now (10m)")
	fs.BoolVar(&lf.follow, "f", false, "follow the log: print new lines as they come, across restarts of the worker, until Ctrl-C")
	fs.BoolVar(&lf.json, "json", false, "print each line as a JSON object (api.LogLine), one per line")
	co := addClientFlags(fs)
	pos, rc := parseArgs(fs, args, "the worker NAME", 1, 1)
	if rc >= 0 {
		return rc
	}
	if msg := co.check(); msg != "" {
		return usageError(stderr, "logs", "%s", msg)
	}
	switch {
	case lf.lines < 1 || lf.lines > control.MaxLogLines:
		return usageError(stderr, "logs", "-n must be from 1 to %d", control.MaxLogLines)
	case lf.follow && co.all:
		return usageError(stderr, "logs", "-f follows one host's worker: use -amqp with -host NAME, not -all")
	}
	name := pos[0]
	p := &logPrinter{w: stdout, json: lf.json}
	if !lf.follow {
		answers, rc := co.do(logsCall(name, lf.lines, lf.since, 0), stderr)
		if rc != exitOK {
			return rc
		}
		return co.report(answers, stdout, stderr, func(w io.Writer, prefix string, a answer) {
			var res api.LogsResult
			if err := json.Unmarshal(a.reply.Result, &res); err != nil {
				fmt.Fprintf(stderr, "dynworkers logs: %sthe logs result has an unexpected shape: %v\n", prefix, err)
				return
			}
			p.prefix = prefix
			p.result(res)
		}, nil)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if co.amqpURL != "" {
		return co.pollLogs(ctx, name, lf, p, stderr)
	}
	return co.streamLogs(ctx, name, lf, p, stderr)
}

// logsCall is the logs request for either transport.
func logsCall(name string, lines int, since string, after uint64) call {
	q := url.Values{}
	if lines != control.DefaultLogLines {
		q.Set("lines", strconv.Itoa(lines))
	}
	if since != "" {
		q.Set("since", since)
	}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	path := "/v1/workers/" + url.PathEscape(name) + "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	message, _ := json.Marshal(control.Request{Operation: control.OpLogs, WorkerName: name, Lines: lines, Since: since, After: after})
	return call{method: http.MethodGet, path: path, message: message}
}

// streamLogs follows the log through the HTTP API's NDJSON stream.
func (o *clientOptions) streamLogs(ctx context.Context, name string, lf logsFlags, p *logPrinter, stderr io.Writer) int {
	base, from, err := o.httpTarget(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers logs: %v\n", err)
		return exitUsage
	}
	c := logsCall(name, lf.lines, lf.since, 0)
	u, _ := url.Parse(base + c.path)
	q := u.Query()
	q.Set("follow", "1")
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers logs: building the request: %v\n", err)
		return exitUsage
	}
	req.Header.Set("Accept", httpapi.NDJSONType+", application/json")
	req.Header.Set("User-Agent", "dynworkers-cli/"+Version)
	tok, err := o.httpToken()
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers logs: %v\n", err)
		return exitUnreachable
	}
	setAPIHeaders(req, tok)
	if o.signer != nil {
		o.signer.Sign(auth.HTTPScope(req.Method, req.URL.RequestURI()), nil, time.Now()).SetHTTP(req.Header)
	}
	client, err := o.httpClient()
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers logs: %v\n", err)
		return exitUnreachable
	}
	// The answer's headers must come within -timeout; the stream then
	// lasts as long as it lasts.
	headers := time.AfterFunc(o.wait(), cancel)
	resp, err := client.Do(req)
	headersInTime := headers.Stop()
	if err != nil {
		switch {
		case ctx.Err() != nil && headersInTime:
			return exitOK // interrupted
		case errors.Is(err, syscall.ECONNREFUSED):
			fmt.Fprintf(stderr, "dynworkers logs: cannot reach the host at %s: connection refused\n  is `dynworkers serve` running? (%s)\n", base, from)
		case ctx.Err() != nil:
			fmt.Fprintf(stderr, "dynworkers logs: no answer from the host at %s within %s (-timeout waits longer)\n", base, o.wait())
		default:
			fmt.Fprintf(stderr, "dynworkers logs: cannot reach the host at %s (%s): %v\n", base, from, err)
		}
		return exitUnreachable
	}
	defer resp.Body.Close()
	if mt := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(mt, httpapi.NDJSONType) {
		// An error, answered as a plain reply before any stream.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
		rep, ok := parseReply(raw)
		if !ok {
			fmt.Fprintf(stderr, "dynworkers logs: unexpected answer from %s: HTTP %s, not a log stream: is %s the dynworkers HTTP API?\n", base, resp.Status, base)
			return exitUnreachable
		}
		return o.report([]answer{{reply: rep, raw: raw}}, io.Discard, stderr, func(io.Writer, string, answer) {}, nil)
	}

	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), maxLogLineBytes)
		for sc.Scan() {
			select {
			case lines <- bytes.Clone(sc.Bytes()):
			case <-ctx.Done():
				return
			}
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		readErr <- err
	}()
	silence := time.NewTimer(logsStreamSilence)
	defer silence.Stop()
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case b := <-lines:
			silence.Reset(logsStreamSilence)
			if err := p.streamLine(b); err != nil {
				fmt.Fprintf(stderr, "dynworkers logs: %v\n", err)
				return exitHostError
			}
		case err := <-readErr:
			if ctx.Err() != nil {
				return exitOK
			}
			why := "the host closed the stream (is it stopping?)"
			if !errors.Is(err, io.EOF) {
				why = "the stream broke: " + err.Error()
			}
			fmt.Fprintf(stderr, "dynworkers logs: %s; run the command again once the host is back\n", why)
			return exitUnreachable
		case <-silence.C:
			fmt.Fprintf(stderr, "dynworkers logs: nothing from the host at %s for %s, not even a keep-alive: taking it for gone\n", base, logsStreamSilence)
			return exitUnreachable
		}
	}
}

// pollLogs follows the log over AMQP: it asks for the last lines, then
// every logsPollInterval for the lines after the last one it printed.
func (o *clientOptions) pollLogs(ctx context.Context, name string, lf logsFlags, p *logPrinter, stderr io.Writer) int {
	pl := &poller{o: o, c: logsCall(name, lf.lines, lf.since, 0)}
	defer pl.close()
	var next uint64
	for first := true; ; first = false {
		notes := io.Writer(io.Discard)
		if first {
			notes = stderr
		}
		answers, err := pl.poll(ctx, notes)
		if ctx.Err() != nil {
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(stderr, "dynworkers logs: %v\n", err)
			return exitUnreachable
		}
		a := answers[0]
		if !a.reply.OK {
			return o.report(answers, io.Discard, stderr, func(io.Writer, string, answer) {}, nil)
		}
		var res api.LogsResult
		if err := json.Unmarshal(a.reply.Result, &res); err != nil {
			fmt.Fprintf(stderr, "dynworkers logs: the logs result has an unexpected shape: %v\n", err)
			return exitHostError
		}
		if !first && len(res.Lines) > 0 && res.Skipped == 0 && res.Lines[0].Seq > next+1 {
			res.Skipped = res.Lines[0].Seq - next - 1
		}
		p.result(res)
		if res.Next > 0 {
			next = res.Next // the host's position (lower when the log was begun anew)
		}
		// Later polls ask for every line after the last one printed.
		pl.c = logsCall(name, control.MaxLogLines, "", next)
		if !sleep(ctx, logsPollInterval) {
			return exitOK
		}
	}
}

// logPrinter prints log lines: as text (logLineText) or, with json, one
// api.LogLine object per line.
type logPrinter struct {
	w      io.Writer
	json   bool
	prefix string // -all: the host's name
}

// result prints the lines of a logs answer, after a note of the lines
// skipped.
func (p *logPrinter) result(res api.LogsResult) {
	p.skipped(res.Skipped)
	for _, l := range res.Lines {
		p.line(l)
	}
}

func (p *logPrinter) skipped(n uint64) {
	if n == 0 {
		return
	}
	if p.json {
		fmt.Fprintf(p.w, "{\"skipped\":%d}\n", n)
		return
	}
	fmt.Fprintf(p.w, "%s--- %d lines skipped: the log turned over faster than it was read ---\n", p.prefix, n)
}

func (p *logPrinter) line(l api.LogLine) {
	if p.json {
		b, _ := json.Marshal(l)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	fmt.Fprintf(p.w, "%s%s\n", p.prefix, logLineText(l))
}

// streamLine prints one line of the follow stream: a log line, a skipped
// count, a blank keep-alive (nothing), or the error the stream ends with.
func (p *logPrinter) streamLine(b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var item struct {
		api.LogLine
		Skipped uint64         `json:"skipped"`
		Error   *control.Error `json:"error"`
	}
	if err := json.Unmarshal(b, &item); err != nil {
		return fmt.Errorf("the stream has a line that is not JSON: %v", err)
	}
	switch {
	case item.Error != nil:
		return fmt.Errorf("following the log failed: %s: %s", item.Error.Code, item.Error.Message)
	case item.Skipped > 0:
		p.skipped(item.Skipped)
	default:
		p.line(item.LogLine)
	}
	return nil
}

// logTimeLayout is the time of a printed line: UTC, milliseconds.
const logTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// logLineText is one log line as printed:
//
//	2026-12-03T16:40:01.123Z INFO  text
//	2026-12-03T16:40:01.200Z       a plain stderr line
//	2026-12-03T16:40:02.000Z --- restarted, pid 123 ---
//
// Control characters of the text (a worker's output may hold terminal
// escapes) are shown escaped.
func logLineText(l api.LogLine) string {
	ts := l.Time.UTC().Format(logTimeLayout)
	text := printable(l.Text)
	if l.Marker != "" {
		return ts + " --- " + text + " ---"
	}
	return fmt.Sprintf("%s %-5s %s", ts, strings.ToUpper(printable(l.Level)), text)
}

// printable escapes the control characters of s (as Go string literals
// do), keeping tabs.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != '\t' && (unicode.IsControl(r) || r == unicode.ReplacementChar) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == '\t' || !unicode.IsControl(r) && r != unicode.ReplacementChar {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}
