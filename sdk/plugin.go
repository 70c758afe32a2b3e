package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/dynworkers/dynworkers/sdk/proto"
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

// VersionedPlugins returns the plugin sets the host offers per protocol
// version. A later protocol version 2 is added here next to 1.
func VersionedPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		1: {PluginName: &GRPCWorkerPlugin{}},
	}
}

// GRPCWorkerPlugin adapts the Worker service to go-plugin. The host uses it
// to dispense a proto.WorkerClient; Serve uses it with Impl set.
type GRPCWorkerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Server is the plugin-side implementation; nil on the host side.
	Impl proto.WorkerServer
}

var _ plugin.GRPCPlugin = (*GRPCWorkerPlugin)(nil)

// GRPCServer registers the Worker service in the plugin process. The
// SDK's own implementation keeps the broker, through which a worker reaches
// the host's Host service (StartRequest.host_broker_id).
func (p *GRPCWorkerPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if srv, ok := p.Impl.(*server); ok {
		srv.setBroker(broker)
	}
	proto.RegisterWorkerServer(s, p.Impl)
	return nil
}

// GRPCClient returns a proto.WorkerClient on the host side.
func (p *GRPCWorkerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return proto.NewWorkerClient(c), nil
}
