// Package web is the host's live dashboard (DESIGN §6): one HTML page, one
// script and one style sheet, embedded in the binary so that the dashboard
// works offline, with no CDN and no build step.
//
// Handler serves the page at GET / and its files under /ui/. They are
// static and hold no data: the page reads everything from the HTTP API in
// the browser, polling GET /v1/status and GET /v1/events every 1.5 s, and
// acts through the same API (POST /v1/workers/{name}/restart, DELETE
// /v1/workers/{name}, POST /v1/workers). So it shows exactly what the API
// sends, configs with their sensitive values already redacted by the host,
// and needs no access of its own.
//
// Every call the page makes carries the header X-Dynworkers-Request: 1,
// which the API requires on every POST and DELETE that has no token (see
// httpapi.RequestHeader): a page of another origin cannot send it, so a
// cross-origin form cannot drive the API.
//
// When the host has an http_token, the API answers the page's first call
// 401 unauthorized; the page then shows a form for the token, keeps it in
// the tab's sessionStorage (gone when the tab closes) and sends it as
// "Authorization: Bearer" on every call. httpapi serves this handler in
// front of its authentication for exactly / and /ui/ (see
// httpapi.Options.UI).
//
// The page renders every value with textContent and DOM calls, never as
// HTML, so a worker named `<i>"x"` shows as just that, and so do the
// details a worker reports about itself (its Status() answer, shown as
// key=value pairs on a line under its row); the
// Content-Security-Policy (default-src 'self') forbids inline scripts and
// anything from elsewhere.
package web
