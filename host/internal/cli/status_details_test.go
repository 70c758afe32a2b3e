package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// How one worker's details read in the tree, checked apart from the golden
// files.
func TestDetailsLines(t *testing.T) {
	for _, tc := range []struct {
		name    string
		details string
		err     string
		want    []string
	}{
		{"none", ``, "", nil},
		{"empty object", `{}`, "", nil},
		{"null", `null`, "", nil},
		{"sorted, numbers as sent", `{"pid": 4242, "mode": "run", "ratio": 0.25, "big": 12345678901234567890}`, "",
			[]string{"big=12345678901234567890 mode=run pid=4242 ratio=0.25"}},
		{"booleans and null", `{"ok": true, "bad": false, "gone": null}`, "", []string{"bad=false gone=null ok=true"}},
		{"quoted when not one word", `{"a b": "c d", "e": "", "f": "x=y", "g": "say \"hi\""}`, "",
			[]string{`"a b"="c d" e="" f="x=y" g="say \"hi\""`}},
		{"control characters escaped", `{"k": "a\u001b[2Jb\nc", "bidi\u202e": "x"}`, "",
			[]string{`"bidi\u202e"=x k="a\x1b[2Jb\nc"`}},
		{"markup as it is", `{"html": "<img src=x>"}`, "", []string{`html="<img src=x>"`}},
		{"objects and arrays as compact JSON", `{"q": {"in": 3, "names": ["a<b"]}, "l": [1, "x"]}`, "",
			[]string{`l=[1,"x"] q={"in":3,"names":["a<b"]}`}},
		{"a long value cut", `{"v": "` + strings.Repeat("x", 60) + `"}`, "",
			[]string{"v=" + strings.Repeat("x", maxValueRunes-1) + "…"}},
		{"a long key cut", `{"` + strings.Repeat("k", 40) + `": 1}`, "",
			[]string{strings.Repeat("k", maxKeyRunes-1) + "…=1"}},
		{"not an object", `["a", 1]`, "", []string{`details=["a",1]`}},
		{"not JSON", `{"a":`, "", []string{`details="{\"a\":"`}},
		{"an error", ``, "the worker did not answer within 500ms", []string{"details: the worker did not answer within 500ms"}},
		{"an error escaped and cut", ``, "boom\x1b[2J" + strings.Repeat("!", 200), []string{
			"details: " + truncate(`boom\x1b[2J`+strings.Repeat("!", 200), maxDetailRunes)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := api.Worker{DetailsError: tc.err}
			if tc.details != "" {
				w.Details = json.RawMessage(tc.details)
			}
			got := detailsLines(w, false)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || len(got) != len(tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Many pairs wrap at detailsWidth, on at most maxDetailsLines lines, the
// last saying how many were left out; nothing is lost without a word.
func TestDetailsLinesWrap(t *testing.T) {
	obj := map[string]string{}
	for i := range 40 {
		obj[string(rune('a'+i%26))+strings.Repeat("k", i/26+1)+"_"+strings.Repeat("v", i%5)] = "value-" + strings.Repeat("x", i%7)
	}
	raw, _ := json.Marshal(obj)
	lines := detailsLines(api.Worker{Details: raw}, false)
	if len(lines) != maxDetailsLines {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), maxDetailsLines, strings.Join(lines, "\n"))
	}
	shown := 0
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > detailsWidth {
			t.Errorf("line %d is %d runes wide, more than %d: %q", i, n, detailsWidth, l)
		}
		shown += strings.Count(l, "=")
	}
	last := lines[len(lines)-1]
	note := moreNote(len(obj) - shown)
	if !strings.HasSuffix(last, " "+note) {
		t.Errorf("the last line does not end with %q: %q", note, last)
	}
	// Sorted: the first key comes first.
	if !strings.HasPrefix(lines[0], "ak_=value-") {
		t.Errorf("first line %q", lines[0])
	}

	// Coloured: keys dim, an error in the warning colour; the text is the
	// same.
	coloured := detailsLines(api.Worker{Details: json.RawMessage(`{"mode":"run","pid":7}`), DetailsError: "slow"}, true)
	want := []string{ansiDim + "mode=" + ansiReset + "run " + ansiDim + "pid=" + ansiReset + "7", ansiYellow + "details: slow" + ansiReset}
	if strings.Join(coloured, "\n") != strings.Join(want, "\n") {
		t.Errorf("coloured %q, want %q", coloured, want)
	}
}

// In the tree the details go under their worker's row, before its last
// exit, indented like it.
func TestStatusTreeShowsDetails(t *testing.T) {
	fixClock(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "status", "tree.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printResult(&b, raw, false, true)
	out := b.String()
	lines := strings.Split(sgr.ReplaceAllString(out, ""), "\n")
	after := func(s string) []string {
		for i, l := range lines {
			if strings.Contains(l, s) {
				return lines[i+1:]
			}
		}
		t.Fatalf("no line with %q:\n%s", s, strings.Join(lines, "\n"))
		return nil
	}
	if l := after("├─ greeter "); l[0] != "│    greetings=1912" || !strings.HasPrefix(l[1], "│    last exit 3m12s ago") {
		t.Errorf("greeter:\n%s", strings.Join(l[:2], "\n"))
	}
	if l := after("├─ pool "); l[0] != "│    details: the worker did not answer within 500ms" {
		t.Errorf("pool: %q", l[0])
	}
	if l := after("└─ pool-child-1 "); l[0] != "        job=batch-17 progress=0.25" {
		t.Errorf("pool-child-1: %q", l[0])
	}
	if !strings.Contains(out, ansiYellow+"details: the worker did not answer within 500ms"+ansiReset) {
		t.Error("details_error is not in the warning colour")
	}
	// A worker without details has none: idle's next line is the next worker.
	if l := after("├─ idle "); !strings.Contains(l[0], "root/campaign-a/inner") {
		t.Errorf("idle is followed by %q", l[0])
	}
}
