package control

import (
	"encoding/json"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/host/internal/config"
)

// Input limits of the control channel. The sizes of a worker_config are
// the config package's (config.MaxConfigBytes, config.MaxConfigValueBytes);
// the size of a whole message is the host's input_limits setting
// (config.InputLimits.ControlMessageBytes), DefaultMaxMessageBytes unless
// set.
const (
	// DefaultMaxMessageBytes bounds a control message body when
	// Dispatcher.SetMaxMessageBytes or AMQPOptions.MaxMessageBytes is not
	// set.
	DefaultMaxMessageBytes = config.DefaultControlMessageBytes
	// MaxRequestIDLen bounds a request_id, in bytes. A longer one is
	// refused, and not echoed back.
	MaxRequestIDLen = 256
)

// tooLarge is the error of a message body over limit bytes. It is
// "malformed", so the AMQP transport dead-letters the message.
func tooLarge(size, limit int) *Error {
	e := Errorf(CodeMalformed,
		"the message is %s; a control message may be at most %s (input_limits.control_message_size); it was not read",
		config.FormatBytes(int64(size)), config.FormatBytes(int64(limit)))
	e.Details = []Detail{{Summary: "Message too large", Detail: e.Message}}
	return e
}

// checkMessageSize refuses a body over limit bytes (limit <= 0 means
// DefaultMaxMessageBytes) before anything reads it.
func checkMessageSize(size, limit int) *Error {
	if limit <= 0 {
		limit = DefaultMaxMessageBytes
	}
	if size > limit {
		return tooLarge(size, limit)
	}
	return nil
}

// checkRequestID refuses a request_id that is too long or holds control
// or format characters. The caller then drops it, so that the reply does
// not echo it.
func checkRequestID(id string) *Error {
	switch {
	case len(id) > MaxRequestIDLen:
		return malformed("request_id", "request_id is %s; it may be at most %d bytes (it was not echoed back)",
			config.FormatBytes(int64(len(id))), MaxRequestIDLen)
	case !utf8.ValidString(id):
		return malformed("request_id", "request_id must be UTF-8 text (it was not echoed back)")
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0:
		return malformed("request_id", "request_id must not contain control or format characters (it was not echoed back)")
	}
	return nil
}

// checkConfigSize refuses a worker_config (a JSON object) larger than
// config.MaxConfigBytes as sent, or with a member larger than
// config.MaxConfigValueBytes, before the Host decodes it with the class's
// schema. The Host checks the decoded config again, encoded as the plugin
// gets it, with the same limits. Values are never quoted.
func checkConfigSize(raw json.RawMessage) *Error {
	if len(raw) > config.MaxConfigBytes {
		return invalid("worker_config", "worker_config is %s; a worker's config may be at most %s (the plugin protocol's messages are limited to 4 MiB); pass large data by reference, e.g. a file path",
			config.FormatBytes(int64(len(raw))), config.FormatBytes(config.MaxConfigBytes))
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil // checkConfig reports it
	}
	var big []string
	for name, v := range members {
		if len(v) > config.MaxConfigValueBytes {
			big = append(big, name)
		}
	}
	if len(big) == 0 {
		return nil
	}
	sort.Strings(big)
	name := big[0]
	e := invalid("worker_config", "worker_config.%s is %s; a config value may be at most %s; pass large data by reference, e.g. a file path",
		quoteShort(name), config.FormatBytes(int64(len(members[name]))), config.FormatBytes(config.MaxConfigValueBytes))
	e.Details = nil
	for _, n := range big {
		e.Details = append(e.Details, Detail{Attribute: "worker_config." + short(n), Summary: "Config value too large",
			Detail: "At most " + config.FormatBytes(config.MaxConfigValueBytes) + " per value."})
	}
	return e
}

// checkDepth refuses a supervisor path deeper than config.MaxDepth (one
// segment more when it does not start at the root).
func checkDepth(field, path string) *Error {
	trimmed := strings.Trim(path, "/")
	depth := config.Depth(trimmed)
	if trimmed != config.RootName && !strings.HasPrefix(trimmed, config.RootName+"/") {
		depth++ // "campaign-a" means "root/campaign-a"
	}
	if depth > config.MaxDepth {
		return invalid(field, "supervisor path %s is %d levels deep; supervisors may nest at most %d levels", quoteShort(path), depth, config.MaxDepth)
	}
	return nil
}
