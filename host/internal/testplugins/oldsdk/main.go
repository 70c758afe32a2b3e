// Command oldsdk is a test-only worker plugin that serves the Worker service
// as a plugin built with an SDK from before health beats does: without the
// HealthBeats RPC (it answers Unimplemented), so that tests can show the
// host polls such a plugin's Health instead. It serves go-plugin directly
// with the wire package's handshake, not through the SDK, which has the RPC.
// Its one class, "oldsdk", takes no config; its status counts the health
// checks it answered.
package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

type server struct {
	proto.UnimplementedWorkerServer
	healthChecks atomic.Int64
}

func (s *server) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return &proto.DescribeResponse{SdkVersion: "v0.0.0-oldsdk", Classes: []*proto.ClassInfo{{
		Name: "oldsdk", Description: "A worker without health beats (tests only).", Version: "0.1.0",
	}}}, nil
}

func (s *server) Start(context.Context, *proto.StartRequest) (*proto.StartResponse, error) {
	return &proto.StartResponse{}, nil
}

func (s *server) Stop(context.Context, *proto.StopRequest) (*proto.StopResponse, error) {
	return &proto.StopResponse{}, nil
}

func (s *server) Health(context.Context, *proto.HealthRequest) (*proto.HealthResponse, error) {
	s.healthChecks.Add(1)
	return &proto.HealthResponse{Healthy: true}, nil
}

func (s *server) Status(context.Context, *proto.StatusRequest) (*proto.StatusResponse, error) {
	return &proto.StatusResponse{DetailsJson: fmt.Appendf(nil, `{"health_checks":%d}`, s.healthChecks.Load())}, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			1: {wire.PluginName: &wire.GRPCWorkerPlugin{Impl: &server{}}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}
