package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/suggest"
)

// maxIntensity bounds a supervisor's intensity, as in HCL.
const maxIntensity = 1000000

// maxPeriodSeconds bounds a period given as a number of seconds: a
// time.Duration holds about 292 years.
const maxPeriodSeconds = float64(math.MaxInt64) / float64(time.Second)

// supervisorSpec checks the fields of a start_supervisor request and
// returns the spec they ask for. An explicit intensity of 0 (no automatic
// restart) becomes -1, since a SupervisorSpec's 0 means the default.
func supervisorSpec(r *Request) (SupervisorSpec, *Error) {
	if err := checkName("supervisor_name", r.SupervisorName); err != nil {
		return SupervisorSpec{}, err
	}
	if err := checkSupervisor(r.Supervisor); err != nil {
		return SupervisorSpec{}, err
	}
	if err := checkStrategy(r.Strategy); err != nil {
		return SupervisorSpec{}, err
	}
	intensity, err := checkIntensity(r.Intensity)
	if err != nil {
		return SupervisorSpec{}, err
	}
	period, err := checkPeriod(r.Period)
	if err != nil {
		return SupervisorSpec{}, err
	}
	return SupervisorSpec{
		Name:      r.SupervisorName,
		Parent:    r.Supervisor,
		Strategy:  r.Strategy,
		Intensity: intensity,
		Period:    period,
	}, nil
}

// checkStopSupervisor checks the supervisor a stop_supervisor names: it is
// required, and a path or a name.
func checkStopSupervisor(path string) *Error {
	if strings.Trim(path, "/") == "" {
		return invalid("supervisor", "supervisor is missing: give the path or name of the supervisor to stop, such as %q or %q",
			config.RootName+"/campaign-a", "campaign-a")
	}
	return checkSupervisor(path)
}

// checkStrategy accepts "" (the default, one_for_one) and the strategies of
// config.Strategies.
func checkStrategy(s string) *Error {
	if s == "" || slices.Contains(config.Strategies, s) {
		return nil
	}
	msg := fmt.Sprintf("strategy %s is not a supervisor strategy: use %s", quoteShort(s), strategyList())
	if m := suggest.Closest(s, config.Strategies); m != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", m)
	}
	return invalid("strategy", "%s", msg)
}

func strategyList() string {
	q := make([]string, len(config.Strategies))
	for i, s := range config.Strategies {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// checkIntensity reads an intensity: absent or null is 0 (the default),
// else a whole number from 0 to maxIntensity, of which 0 (no automatic
// restart) is returned as -1.
func checkIntensity(raw json.RawMessage) (int, *Error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return 0, nil
	}
	if !json.Valid(t) {
		return 0, malformed("intensity", "intensity is not valid JSON")
	}
	if k := kind(t); k != "a number" {
		return 0, malformed("intensity", "%q must be a whole number, not %s", "intensity", k)
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > maxIntensity {
		return 0, invalid("intensity", "intensity must be a whole number from 0 to %d, not %s", maxIntensity, cut(string(t), 40))
	}
	if f == 0 {
		return -1, nil
	}
	return int(f), nil
}

// checkPeriod reads a period: absent or null is 0 (the default), else a
// duration string such as "30s" or "1m30s", or a number of seconds, and
// greater than zero.
func checkPeriod(raw json.RawMessage) (time.Duration, *Error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return 0, nil
	}
	if !json.Valid(t) {
		return 0, malformed("period", "period is not valid JSON")
	}
	switch k := kind(t); k {
	case "a string":
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return 0, malformed("period", "period is not a valid JSON string")
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			return 0, invalid("period", "period %s is not a duration: use a number with a unit, such as \"30s\" or \"1m30s\", or a number of seconds", quoteShort(s))
		case d <= 0:
			return 0, invalid("period", "period must be greater than zero, not %s", quoteShort(s))
		}
		return d, nil
	case "a number":
		secs, err := strconv.ParseFloat(string(t), 64)
		switch {
		case secs <= 0: // -Inf too: a JSON number is well formed, so err is a range error
			return 0, invalid("period", "period must be greater than zero, not %s", cut(string(t), 40))
		case err != nil || secs >= maxPeriodSeconds:
			return 0, invalid("period", "period %s is too long: a period is less than %.0f seconds", cut(string(t), 40), maxPeriodSeconds)
		}
		d := time.Duration(secs * float64(time.Second))
		if d <= 0 {
			return 0, invalid("period", "period must be greater than zero, not %s seconds (less than a nanosecond)", cut(string(t), 40))
		}
		return d, nil
	default:
		return 0, malformed("period", "%q must be a duration string such as \"30s\" or a number of seconds, not %s", "period", k)
	}
}
