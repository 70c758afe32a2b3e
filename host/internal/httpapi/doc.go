// Package httpapi is the host's HTTP control API: the same operations as
// the AMQP control channel (DESIGN §5), for operators, scripts and the
// dynworkers CLI on the host's own machine.
//
// # Routes
//
//	POST   /v1/control                 a control message body, exactly as on AMQP
//	GET    /v1/status                  operation status
//	GET    /v1/classes                 operation list_classes
//	POST   /v1/workers                 operation vumi_worker (start)
//	DELETE /v1/workers/{name}          operation stop_worker
//	POST   /v1/workers/{name}/restart  operation restart_worker
//	GET    /v1/workers/{name}/logs     operation logs (?lines=N&since=S&after=SEQ); &follow=1: an NDJSON stream
//	POST   /v1/supervisors             operation start_supervisor
//	DELETE /v1/supervisors/{path...}   operation stop_supervisor
//	GET    /v1/cluster                 operation cluster_status (api.ClusterView)
//	POST   /v1/cluster/hosts/{host}/drain    operation drain of that host
//	POST   /v1/cluster/hosts/{host}/undrain  operation undrain of that host
//	GET    /v1/events                  the most recent lifecycle events, when Options.Events is set
//	GET    /healthz                    {"ok":true}: the host process answers
//	GET    /  and  /ui/...             the web dashboard, when Options.UI is set
//
// POST /v1/control takes a Blinkenlights envelope or its bare payload and
// hands it to the Doer's Handle when it has one (control.Dispatcher does:
// see BodyHandler), else decodes it with control.Decode and calls Do, so
// that a message means the same over HTTP as over AMQP. POST /v1/workers
// takes
//
//	{"name": "w1", "class": "hello", "config": {"greeting": "hi"},
//	 "supervisor": "root", "replace": false, "request_id": "...",
//	 "cluster": false, "constraints": {"zone": "a"}}
//
// where only name and class are required; "cluster": true makes it a
// cluster start (placed on any host of the system, on a host with every
// label of "constraints"), ignored by a host without a cluster block.
//
// The cluster routes go through the Doer like the rest (the control
// policy, the counters and the log see them as the operations
// cluster_status, drain and undrain): a host without a cluster block
// answers them 409 with code conflict. The drain routes mirror the REST
// style of POST /v1/workers/{name}/restart and take no body. POST /v1/supervisors takes the
// members of a start_supervisor payload but the operation:
//
//	{"supervisor_name": "campaign-a", "supervisor": "root",
//	 "strategy": "one_for_all", "intensity": 5, "period": "30s",
//	 "request_id": "..."}
//
// where only supervisor_name is required (period may also be a number of
// seconds). DELETE /v1/supervisors/{path...} takes the supervisor's path
// or name, slashes included: /v1/supervisors/root/campaign-a. In both
// bodies unknown members are rejected (code malformed), so that a typo
// such as "confg" is not silently a start with the default config.
//
// Every answer, errors included, is a control.Reply in JSON:
// {"ok": true, "result": ...} or {"ok": false, "error": {"code", "message",
// "details"}}. The HTTP status follows the error code (control.Code's
// HTTPStatus): 200 ok; 400 malformed and unknown_operation; 422
// invalid_config and unknown_class (the request is well formed but names a
// class no plugin offers: 404 is kept for a missing worker or route); 409
// conflict; 404 not_found; 401 unauthorized; 500 internal. Two statuses come
// from HTTP itself, with code malformed: 405 for a method a route does
// not take (with an Allow header), 408 for a body that did not arrive in
// time, 413 for a body over MaxBodyBytes and 415 for a body that is not
// application/json; 403 forbidden is the guard's (see below). An
// unknown path is 404 with code not_found.
//
// # Authentication
//
// When Options.Token is set, every route but /healthz needs the header
// "Authorization: Bearer <token>", reads included: status shows the worker
// tree, classes and (redacted) configs, which is topology an unauthenticated
// caller on a non-loopback address should not learn. /healthz stays open so
// that load balancers and probes need no secret. The token is compared in
// constant time. A missing or wrong token is answered 401 with code
// unauthorized before the body is read. An empty Token means no
// authentication; the configuration allows that only on a loopback address,
// and ListenAndServe refuses a non-loopback address without a token as well.
//
// The web dashboard (Options.UI) is open too: a browser cannot send a
// bearer token when it navigates to a page, so the page at / and its static
// files under /ui/ are served without the token. They hold no data; the
// page asks the operator for the token, keeps it in the tab's
// sessionStorage and sends it on every /v1 call, which is checked as any
// other. Only GET and HEAD reach the UI handler, and its paths never reach
// the API's routes. Without a UI, / and /ui/ are unknown paths behind the
// token like the rest.
//
// # Requests a web page cannot make
//
// A browser on the host's machine reaches the loopback API too, on behalf
// of any page it shows. guard refuses, before authentication and before
// the body is read: a Host header that is not a name of this host when the
// API listens on loopback or has Options.AllowedHosts (DNS rebinding); an
// Origin other than the API's own; a mutating request the browser marks as
// cross-origin (Sec-Fetch-Site); a POST, PUT, PATCH or DELETE without
// RequestHeader or a bearer token (what a cross-origin form or no-cors
// fetch sends: the header would need a CORS preflight, which the API never
// grants); and a body not sent as application/json (415). The refusals are
// 403 with code "forbidden", logged at warn level.
//
// # Robustness
//
// Every connection is bounded whatever it asks for, authenticated or not
// (Options.Timeouts): its headers must arrive within 10s, its body within
// 30s of them (withLimits sets that read deadline before anything else
// runs, so it also bounds the body the server discards after an early 401
// or 403), an answer must be written within 30s once it is ready, and a
// kept-alive connection may wait 2m for its next request. Headers may take
// 64 KiB and a body MaxBodyBytes. The operation itself has no deadline (a
// start waits for the worker's start_timeout), and it is not cancelled when
// the client goes away: like a control message that was received, a
// request that reached the host is carried out to the end. Each request is
// logged at debug level with method, path, status and duration; bodies,
// which may hold secrets, never are.
//
// # Log follow streams
//
// GET /v1/workers/{name}/logs?follow=1 (with lines, since and after as
// without follow) first runs the logs operation through the Doer, so that
// validation and the control policy apply: an error is answered as any
// other, a JSON reply with its status. Then it answers 200 with
// Content-Type application/x-ndjson and streams, one JSON object per line:
// the lines of that answer (api.LogLine), then every new line of the log
// as it comes (the Doer's LogFollower), across restarts of the worker
// (whose markers are lines of the log); {"skipped": N} when N lines went
// by faster than the stream read them; a blank line after
// Options.LogKeepAlive (15s) without a line, so that proxies keep the
// connection and a client can tell a silent log from a dead peer; and
// {"error": {...}} just before the end if following failed. Each write
// has Timeouts.Write, and the read deadlines are lifted once the request
// is read. The stream ends when the client goes away, when a write fails,
// or when ListenAndServe shuts down (which ends the streams before it
// waits for the requests in flight). At most Options.MaxLogStreams (64)
// streams are open at once; one more is answered 503 (code conflict) with
// Retry-After.
//
// With Options.TLS the API serves HTTPS (TLS 1.2+, HTTP/1.1), optionally
// requiring client certificates.
package httpapi
