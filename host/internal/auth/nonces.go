package auth

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// nonceCache remembers the nonces of accepted signed requests until their
// window ends, up to max of them; with a file, across restarts too.
type nonceCache struct {
	mu   sync.Mutex
	max  int
	seen map[[32]byte]time.Time // digest of key id and nonce -> end of its window
	// order keeps the digests by insertion; expired ones at its front are
	// dropped first, and the whole is scanned only when the cache is full.
	order [][32]byte

	path  string   // "" without a file
	file  *os.File // open for appending
	lines int      // lines in the file
}

const nonceCacheFull = "too many signed requests within the replay window (%d): refused until older ones expire"

// openNonceCache makes a cache of at most max nonces. With a path, it
// loads the nonces of the file still within their window, rewrites the
// file with them alone, and appends every nonce accepted from then on.
func openNonceCache(max int, path string, now time.Time) (*nonceCache, error) {
	c := &nonceCache{max: max, seen: map[[32]byte]time.Time{}, path: path}
	if path == "" {
		return c, nil
	}
	if err := c.load(now); err != nil {
		return nil, err
	}
	if err := c.rewrite(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the file: one "<hex digest> <end of window, Unix seconds>"
// per line. A line that cannot be read (a torn last write) is skipped.
func (c *nonceCache) load(now time.Time) error {
	f, err := os.Open(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nonce file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		d, until, ok := parseNonceLine(sc.Text())
		if !ok || !now.Before(until) {
			continue
		}
		if _, dup := c.seen[d]; !dup {
			c.order = append(c.order, d)
		}
		c.seen[d] = until
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("nonce file %s: %w", c.path, err)
	}
	return nil
}

func parseNonceLine(l string) ([32]byte, time.Time, bool) {
	var d [32]byte
	h, ts, ok := strings.Cut(l, " ")
	if !ok || len(h) != 64 {
		return d, time.Time{}, false
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, time.Time{}, false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return d, time.Time{}, false
	}
	return d, time.Unix(sec, 0), true
}

func nonceLine(d [32]byte, until time.Time) string {
	return hex.EncodeToString(d[:]) + " " + strconv.FormatInt(until.Unix(), 10) + "\n"
}

// rewrite replaces the file with the nonces in memory (atomically: a
// temporary file, synced, renamed) and opens it for appending.
func (c *nonceCache) rewrite() error {
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".nonces-*")
	if err != nil {
		return fmt.Errorf("nonce file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	w := bufio.NewWriter(tmp)
	for _, d := range c.order {
		if until, ok := c.seen[d]; ok {
			w.WriteString(nonceLine(d, until))
		}
	}
	err = errors.Join(w.Flush(), tmp.Chmod(0o600), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		return fmt.Errorf("nonce file %s: %w", c.path, err)
	}
	c.lines = len(c.seen)
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("nonce file: %w", err)
	}
	c.file = f
	return nil
}

// add records a nonce until the end of its window, or says why not: it was
// seen (a replay, unless the broker redelivers the message), the cache is
// full, or the file cannot be written (the request is then refused rather
// than accepted unrecorded).
func (c *nonceCache) add(keyID, nonce string, until, now time.Time, redelivered bool) error {
	h := sha256.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write([]byte(nonce))
	var k [32]byte
	h.Sum(k[:0])
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[k]; ok && now.Before(exp) {
		if redelivered {
			return nil
		}
		return unauthenticated("replayed: nonce %q of key id %q was already used within the replay window", shorten(nonce), keyID)
	}
	c.prune(now)
	if len(c.seen) >= c.max {
		return unauthenticated(nonceCacheFull, c.max)
	}
	if c.file != nil {
		if err := c.record(k, until); err != nil {
			return unauthenticated("the host cannot record the request's nonce (%v); refused rather than left open to a replay", err)
		}
	}
	c.seen[k] = until
	c.order = append(c.order, k)
	return nil
}

// record appends a nonce to the file and syncs it; the file is compacted
// when it holds many more lines than live nonces.
func (c *nonceCache) record(k [32]byte, until time.Time) error {
	if c.lines > 2*len(c.seen)+1024 {
		if err := c.rewrite(); err != nil {
			return err
		}
	}
	if _, err := c.file.WriteString(nonceLine(k, until)); err != nil {
		return err
	}
	if err := c.file.Sync(); err != nil {
		return err
	}
	c.lines++
	return nil
}

// prune drops expired nonces: those at the front of order, and, when the
// cache is full, any.
func (c *nonceCache) prune(now time.Time) {
	i := 0
	for ; i < len(c.order); i++ {
		exp, ok := c.seen[c.order[i]]
		if ok && now.Before(exp) {
			break
		}
		delete(c.seen, c.order[i])
	}
	c.order = c.order[i:]
	if len(c.seen) < c.max {
		return
	}
	kept := c.order[:0]
	for _, k := range c.order {
		if exp, ok := c.seen[k]; ok {
			if now.Before(exp) {
				kept = append(kept, k)
			} else {
				delete(c.seen, k)
			}
		}
	}
	c.order = kept
}

func (c *nonceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Close closes the nonce file, if any.
func (p *Policy) Close() error {
	c := p.nonces
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file == nil {
		return nil
	}
	err := c.file.Close()
	c.file = nil
	return err
}
