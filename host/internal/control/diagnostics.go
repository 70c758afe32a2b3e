package control

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Errors made of configuration diagnostics: a worker_config that does not
// fit its class's schema, and a configuration a reload cannot use.

var quotedName = regexp.MustCompile(`"([a-z_][a-z0-9_]*)"`)

// InvalidWorkerConfig turns the diagnostics of a worker's config into an
// invalid_config error whose details name the attribute at fault. The
// diagnostics never hold sensitive values (the config package scrubs
// them).
func InvalidWorkerConfig(worker, class string, diags hcl.Diagnostics) *Error {
	e := &Error{Code: CodeInvalidConfig}
	var names []string
	for _, d := range diags.Errs() {
		var hd *hcl.Diagnostic
		if !errors.As(d, &hd) {
			continue
		}
		det := Detail{Summary: hd.Summary, Detail: hd.Detail}
		if m := quotedName.FindStringSubmatch(hd.Detail); m != nil {
			det.Attribute = m[1]
			names = append(names, m[1])
		}
		e.Details = append(e.Details, det)
	}
	e.Message = fmt.Sprintf("worker_config of worker %q (class %s) is invalid", worker, class)
	if len(names) > 0 {
		e.Message += ": " + strings.Join(slices.Compact(names), ", ")
	}
	return e
}

// InvalidConfiguration turns the diagnostics of the host's configuration
// into the error of a reload, which changed nothing.
func InvalidConfiguration(diags hcl.Diagnostics) *Error {
	e := &Error{Code: CodeInvalidConfig, Message: "the configuration has errors; nothing was changed"}
	for _, d := range diags.Errs() {
		var hd *hcl.Diagnostic
		if !errors.As(d, &hd) {
			continue
		}
		det := Detail{Summary: hd.Summary, Detail: hd.Detail}
		if hd.Subject != nil {
			det.Summary = fmt.Sprintf("%s: %s", hd.Subject.String(), hd.Summary)
		}
		e.Details = append(e.Details, det)
	}
	return e
}
