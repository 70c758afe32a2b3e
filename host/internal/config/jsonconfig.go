package config

import (
	"bytes"
	"strconv"
	"strings"

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
