// Package wire is what the host and the plugins' SDK share on the wire: the
// go-plugin handshake, the plugin set, the environment variables the host
// sets for a plugin, the gRPC services (package proto) and the checks both
// sides apply to the same values. It is internal to the module, so plugin
// authors cannot import it: package sdk is their whole surface, and the
// protocol can change under it without breaking a plugin's source.
package wire

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// Handshake is the go-plugin handshake shared by the host and every plugin.
// The magic cookie keeps a plugin binary from being run as a normal program
// by mistake; ProtocolVersion changes when the Worker service changes in an
// incompatible way (see VersionedPlugins).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "DYNWORKERS_PLUGIN",
	MagicCookieValue: "3b6f0f8e2a5c4d1e9b7a8c6d5e4f3a2b",
}

// PluginName is the name under which the Worker service is dispensed.
const PluginName = "worker"

// EnvParentPID is set by the host to its own pid when it launches a plugin;
// the plugin exits when its parent is no longer that process.
const EnvParentPID = "DYNWORKERS_PARENT_PID"

// EnvLogLevel sets the plugin's log level (trace, debug, info, warn, error);
// the host sets it to its own level.
const EnvLogLevel = "DYNWORKERS_LOG_LEVEL"

// VersionedPlugins returns the plugin sets the host offers per protocol
// version. A later protocol version 2 is added here next to 1.
func VersionedPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		1: {PluginName: &GRPCWorkerPlugin{}},
	}
}

// BrokerUser is implemented by a Worker server that reaches the host's
// Host service through go-plugin's broker (StartRequest.host_broker_id).
type BrokerUser interface {
	SetBroker(*plugin.GRPCBroker)
}

// GRPCWorkerPlugin adapts the Worker service to go-plugin. The host uses it
// to dispense a proto.WorkerClient; the SDK's Serve uses it with Impl set.
type GRPCWorkerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the plugin-side implementation; nil on the host side.
	Impl proto.WorkerServer
}

var _ plugin.GRPCPlugin = (*GRPCWorkerPlugin)(nil)

// GRPCServer registers the Worker service in the plugin process, giving
// the broker to an Impl that is a BrokerUser.
func (p *GRPCWorkerPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if u, ok := p.Impl.(BrokerUser); ok {
		u.SetBroker(broker)
	}
	proto.RegisterWorkerServer(s, p.Impl)
	return nil
}

// GRPCClient returns a proto.WorkerClient on the host side.
func (p *GRPCWorkerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return proto.NewWorkerClient(c), nil
}

// MaxNameLen is the longest routing key, queue or metric name, in bytes
// (AMQP's short string).
const MaxNameLen = 255

// Metric aggregators: how the host combines the values a worker reports
// within one metrics interval.
const (
	AggSum  = "sum"
	AggAvg  = "avg"
	AggMin  = "min"
	AggMax  = "max"
	AggLast = "last"
)

// ValidAggregator reports whether a is one of the metric aggregators.
func ValidAggregator(a string) bool {
	switch a {
	case AggSum, AggAvg, AggMin, AggMax, AggLast:
		return true
	}
	return false
}

// ErrInvalidMetric matches the error for a metric the host would refuse:
// an empty or overlong name, a value that is NaN or infinite, an unknown
// aggregator. The SDK exports it as sdk.ErrInvalidMetric.
var ErrInvalidMetric = errors.New("invalid metric")

// CheckMetric checks a metric as the host does and returns its aggregators
// without duplicates, [AggAvg] when none are given.
func CheckMetric(name string, value float64, aggregators []string) ([]string, error) {
	switch {
	case name == "":
		return nil, fmt.Errorf("%w: the name must not be empty", ErrInvalidMetric)
	case len(name) > MaxNameLen:
		return nil, fmt.Errorf("%w: the name is %d bytes long, more than %d", ErrInvalidMetric, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return nil, fmt.Errorf("%w: the name %q is not valid UTF-8", ErrInvalidMetric, name)
	case math.IsNaN(value) || math.IsInf(value, 0):
		return nil, fmt.Errorf("%w: metric %q: the value %v is not a finite number", ErrInvalidMetric, name, value)
	}
	if len(aggregators) == 0 {
		return []string{AggAvg}, nil
	}
	out := make([]string, 0, len(aggregators))
	for _, a := range aggregators {
		if !ValidAggregator(a) {
			return nil, fmt.Errorf("%w: metric %q: unknown aggregator %q (want sum, avg, min, max or last)", ErrInvalidMetric, name, a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
