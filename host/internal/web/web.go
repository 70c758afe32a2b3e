package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// PathPrefix is where the page's files are served; the page itself is at /.
const PathPrefix = "/ui/"

// ContentSecurityPolicy is sent with every answer of Handler: the page may
// load scripts, styles and data from the host only, and may not be framed.
const ContentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// contentTypes are the types of the embedded files, fixed here rather than
// taken from mime.TypeByExtension, which reads the machine's mime.types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// indexFile is the page served at /.
const indexFile = "index.html"

// Handler returns the handler of the dashboard: GET or HEAD / is the page,
// /ui/<file> its script and style sheet; anything else is 404. Answers are
// revalidated on every load (Cache-Control: no-cache, with an ETag), so a
// browser picks up a new host's page at once and otherwise gets 304s.
func Handler() http.Handler {
	assets := map[string]*asset{}
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		panic("web: reading the embedded files: " + err.Error()) // cannot happen: they are compiled in
	}
	for _, e := range entries {
		body, err := fs.ReadFile(static, "static/"+e.Name())
		if err != nil {
			panic("web: reading the embedded files: " + err.Error())
		}
		sum := sha256.Sum256(body)
		ctype, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			panic("web: no content type for the embedded file " + e.Name())
		}
		assets[e.Name()] = &asset{name: e.Name(), body: body, ctype: ctype,
			etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var a *asset
		switch {
		case r.URL.Path == "/":
			a = assets[indexFile]
		case strings.HasPrefix(r.URL.Path, PathPrefix):
			name := strings.TrimPrefix(r.URL.Path, PathPrefix)
			if name != indexFile && !strings.Contains(name, "/") {
				a = assets[name]
			}
		}
		if a == nil {
			h.Set("Cache-Control", "no-store")
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		// ServeContent answers If-None-Match with 304, and HEAD and
		// ranges; a zero modification time leaves Last-Modified out.
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}
