package config

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/hashicorp/hcl/v2"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
)

// DecodeWorkerConfigJSON validates and decodes a worker config given as a
// JSON object (the worker_config of a control message) with the same spec
// as HCL config bodies, so it gives the same diagnostics, and converts the
// same way: "port": "2773" becomes the number 2773. filename names the
// source in diagnostic ranges, e.g. "control message". Empty input and null
// mean an empty object.
//
// Strings are literal: unlike HCL files, JSON from a control message is not
// evaluated as templates, so it cannot call env() or file().
func DecodeWorkerConfigJSON(schema sdk.Schema, src []byte, filename string) (cty.Value, hcl.Diagnostics) {
	if t := bytes.TrimSpace(src); len(t) == 0 || string(t) == "null" {
		src = []byte("{}")
	}
	f, diags := hcljson.Parse(src, filename)
	if diags.HasErrors() {
		clampRanges(diags, src)
		return cty.NilVal, diags
	}
	val, more := decodeConfig(schema, f.Body, nil)
	for _, d := range more {
		harmonizeJSONDiag(d)
		if d.Summary == "Missing required argument" {
			// HCL points at the block; the JSON decoder at the closing
			// brace. Point at the opening one.
			d.Subject = openingBrace(src, filename).Ptr()
		}
	}
	diags = append(diags, more...)
	sortDiagnostics(diags)
	return val, diags
}

// harmonizeJSONDiag words the JSON decoder's "Extraneous JSON object
// property" like HCL's "Unsupported argument", so both paths read the same.
func harmonizeJSONDiag(d *hcl.Diagnostic) {
	if d.Summary != "Extraneous JSON object property" {
		return
	}
	rest, ok := strings.CutPrefix(d.Detail, "No argument or block type is named ")
	if !ok {
		return
	}
	name, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return
	}
	suggestion := strings.TrimPrefix(rest[len(name):], ".")
	d.Summary = "Unsupported argument"
	d.Detail = "An argument named " + name + " is not expected here." + suggestion
}

// clampRanges moves the ends of diagnostic ranges that lie past the end of
// src back to it: HCL's JSON parser points one byte past the end of the
// input for an unterminated string (`"` gives 1,2-3), and a printer that
// slices the source by a range must not go out of it.
func clampRanges(diags hcl.Diagnostics, src []byte) {
	end := endPos(src)
	for _, d := range diags {
		for _, r := range []*hcl.Range{d.Subject, d.Context} {
			if r == nil {
				continue
			}
			if r.End.Byte > end.Byte {
				r.End = end
			}
			if r.Start.Byte > r.End.Byte {
				r.Start = r.End
			}
		}
	}
}

// endPos returns the position just after the last byte of src.
func endPos(src []byte) hcl.Pos {
	last := bytes.LastIndexByte(src, '\n') + 1
	return hcl.Pos{
		Line:   1 + bytes.Count(src, []byte("\n")),
		Column: 1 + utf8.RuneCount(src[last:]),
		Byte:   len(src),
	}
}

// openingBrace returns the range of the first non-space byte of src.
func openingBrace(src []byte, filename string) hcl.Range {
	pos := hcl.InitialPos
	for _, c := range src {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			break
		}
		pos.Byte++
		pos.Column++
		if c == '\n' {
			pos.Line++
			pos.Column = 1
		}
	}
	end := pos
	end.Byte++
	end.Column++
	return hcl.Range{Filename: filename, Start: pos, End: end}
}
