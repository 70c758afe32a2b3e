package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// A worker's details (its own Status() answer, api.Worker.Details) are
// shown under its row as key=value pairs, sorted by key:
//
//	├─ acct  running  smpp  4243  12s  0  9.1 MiB  0.0%
//	│    bind=smpp://account1:(sensitive)@smsc.example host=smsc.example password_set=true pid=4243 port=2775
//	│    username=account1
//
// and details_error, why there are none, in the warning colour:
//
//	│    details: the worker did not answer within 500ms
//
// The details come from the worker: they are cleaned like every other
// text from the host, and cut short, since the tree is an overview and
// -json has them whole.
const (
	// maxKeyRunes and maxValueRunes are where a key and a value are cut.
	maxKeyRunes   = 32
	maxValueRunes = 48
	// detailsWidth is the width a details line is wrapped at, in runes
	// after the tree's prefix; a pair longer than that has a line of its
	// own.
	detailsWidth = maxDetailRunes
	// maxDetailsLines is the number of lines a worker's details take at
	// most; the last one then says how many pairs were left out.
	maxDetailsLines = 3
)

// detailPair is one key=value of a worker's details, as shown.
type detailPair struct{ key, value string }

func (d detailPair) width() int {
	return utf8.RuneCountInString(d.key) + 1 + utf8.RuneCountInString(d.value)
}

// detailsLines returns the lines that show a worker's details and
// details_error, painted, without the tree's prefix; none when it has
// neither.
func detailsLines(wr api.Worker, p painter) []string {
	var lines []string
	if pairs := detailPairs(wr.Details); len(pairs) > 0 {
		lines = wrapPairs(pairs, p)
	}
	if wr.DetailsError != "" {
		lines = append(lines, p.paint(ansiYellow, "details: "+truncate(clean(wr.DetailsError), maxDetailRunes)))
	}
	return lines
}

// detailPairs decodes a worker's details. An object gives its members,
// sorted by key; anything else (a host or worker that sends some other
// JSON value) is shown whole as one pair "details=<json>".
func detailPairs(raw json.RawMessage) []detailPair {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // a pid stays 4242, not 4.242e+03
	var v any
	if err := dec.Decode(&v); err != nil {
		return []detailPair{{key: "details", value: detailValue(string(raw))}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil
		}
		return []detailPair{{key: "details", value: detailValue(v)}}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]detailPair, 0, len(keys))
	for _, k := range keys {
		pairs = append(pairs, detailPair{key: detailKey(k), value: detailValue(obj[k])})
	}
	return pairs
}

// detailKey is a key as shown: quoted when it would not read as one word.
func detailKey(k string) string {
	k = truncate(k, maxKeyRunes)
	if needsQuotes(k) {
		return strconv.Quote(k)
	}
	return k
}

// detailValue is a value as shown: a string bare when it is one word and
// quoted otherwise, a number, boolean or null as in JSON, an object or
// array as compact JSON; cut at maxValueRunes and cleaned.
func detailValue(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		v = truncate(v, maxValueRunes)
		if needsQuotes(v) {
			return clean(strconv.Quote(v))
		}
		return v
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	case nil:
		s = "null"
	default:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // a terminal shows <, > and & as they are
		if err := enc.Encode(v); err != nil {
			s = fmt.Sprint(v)
		} else {
			s = strings.TrimSuffix(b.String(), "\n")
		}
	}
	return clean(truncate(s, maxValueRunes))
}

// needsQuotes reports whether s would not read as one word in a
// key=value list: empty, or with spaces, quotes, '=' or characters that
// clean would escape.
func needsQuotes(s string) bool {
	return s == "" || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
		return r == '"' || r == '=' || unicode.IsSpace(r) || unsafeRune(r)
	})
}

// wrapPairs puts the pairs on lines of at most detailsWidth runes, at
// most maxDetailsLines of them, keys dim.
func wrapPairs(pairs []detailPair, p painter) []string {
	var rows [][]detailPair
	width := 0
	for _, d := range pairs {
		if n := len(rows); n > 0 && width+1+d.width() <= detailsWidth {
			rows[n-1] = append(rows[n-1], d)
			width += 1 + d.width()
			continue
		}
		rows = append(rows, []detailPair{d})
		width = d.width()
	}
	left := 0
	if len(rows) > maxDetailsLines {
		for _, r := range rows[maxDetailsLines:] {
			left += len(r)
		}
		rows = rows[:maxDetailsLines]
		// Make room for the note on the last line, keeping one pair.
		last := rows[len(rows)-1]
		for len(last) > 1 && lineWidth(last)+1+len(moreNote(left+1)) > detailsWidth {
			last = last[:len(last)-1]
			left++
		}
		rows[len(rows)-1] = last
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		parts := make([]string, 0, len(r)+1)
		for _, d := range r {
			parts = append(parts, p.paint(ansiDim, d.key+"=")+d.value)
		}
		lines = append(lines, strings.Join(parts, " "))
	}
	if left > 0 {
		lines[len(lines)-1] += " " + p.paint(ansiDim, moreNote(left))
	}
	return lines
}

// moreNote says how many pairs were left out.
func moreNote(n int) string { return fmt.Sprintf("(+%d more, see -json)", n) }

// lineWidth is the width of pairs on one line.
func lineWidth(pairs []detailPair) int {
	w := len(pairs) - 1
	for _, d := range pairs {
		w += d.width()
	}
	return w
}
