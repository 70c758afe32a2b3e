package catalog

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// cacheVersion changes when the cache file's format does; a file of another
// version is ignored.
const cacheVersion = 1

// cacheFile is the JSON form of the describe cache.
type cacheFile struct {
	Version int          `json:"version"`
	Entries []cacheEntry `json:"entries"`
}

// cacheEntry is the Describe result of one binary, valid while the binary's
// path, size, modification time and sha256 are unchanged.
type cacheEntry struct {
	Path     string          `json:"path"`
	Size     int64           `json:"size"`
	ModTime  int64           `json:"mtime_ns"`
	SHA256   string          `json:"sha256"`
	Describe json.RawMessage `json:"describe"` // protojson of proto.DescribeResponse
}

type cacheKey struct {
	path    string
	size    int64
	modTime int64
	sha256  string
}

func keyOf(b *Binary) cacheKey {
	return cacheKey{b.Path, b.Size, b.ModTime.UnixNano(), hex.EncodeToString(b.SHA256)}
}

// describeCache is safe for concurrent use.
type describeCache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

func newCache() *describeCache {
	return &describeCache{entries: map[cacheKey]cacheEntry{}}
}

// loadCache reads the cache file; a missing, unreadable or corrupt file
// gives an empty cache (with a warning unless the file is just missing).
func loadCache(path string, log hclog.Logger) *describeCache {
	c := newCache()
	if path == "" {
		return c
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return c
	}
	if err != nil {
		log.Warn("ignoring the plugin describe cache", "path", path, "error", err)
		return c
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		log.Warn("ignoring a corrupt plugin describe cache", "path", path, "error", err)
		return c
	}
	if f.Version != cacheVersion {
		log.Warn("ignoring a plugin describe cache of another version", "path", path, "version", f.Version)
		return c
	}
	for _, e := range f.Entries {
		c.entries[cacheKey{e.Path, e.Size, e.ModTime, e.SHA256}] = e
	}
	return c
}

// get returns the cached Describe result for b, if its key matches.
func (c *describeCache) get(b *Binary) (*proto.DescribeResponse, bool) {
	c.mu.Lock()
	e, ok := c.entries[keyOf(b)]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	resp := &proto.DescribeResponse{}
	if err := protojson.Unmarshal(e.Describe, resp); err != nil {
		return nil, false
	}
	return resp, true
}

func (c *describeCache) put(b *Binary, resp *proto.DescribeResponse) {
	raw, err := protojson.Marshal(resp)
	if err != nil {
		return
	}
	k := keyOf(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[k] = cacheEntry{Path: k.path, Size: k.size, ModTime: k.modTime, SHA256: k.sha256, Describe: raw}
}

// save writes the cache atomically (a temporary file renamed over the old
// one), and not at all when the content is unchanged.
func (c *describeCache) save(path string) error {
	c.mu.Lock()
	f := cacheFile{Version: cacheVersion, Entries: make([]cacheEntry, 0, len(c.entries))}
	for _, e := range c.entries {
		f.Entries = append(f.Entries, e)
	}
	c.mu.Unlock()
	slices.SortFunc(f.Entries, func(a, b cacheEntry) int { return cmp.Compare(a.Path, b.Path) })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	dir := filepath.Dir(path)
	// The state directory, which holds secrets: private if made here.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic writes data to path, mode 0644, through a synced
// temporary file in the same directory renamed over it: a reader sees the
// old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
