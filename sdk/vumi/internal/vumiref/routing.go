package vumiref

// Routing keys as Vumi's connectors name them ("%s.%s" % (name, mtype) in
// vumi/connectors.py): a transport publishes user messages from users on
// <transport>.inbound and events on <transport>.event, and consumes the
// messages it should send from <transport>.outbound. Failures go to
// <transport>.failures (vumi/transports/base.py).

// InboundKey is the routing key of the messages transport receives from
// users: transport + ".inbound".
func InboundKey(transport string) string { return transport + ".inbound" }

// OutboundKey is the routing key of the messages transport should send:
// transport + ".outbound".
func OutboundKey(transport string) string { return transport + ".outbound" }

// EventKey is the routing key of transport's events (acks, nacks and
// delivery reports): transport + ".event".
func EventKey(transport string) string { return transport + ".event" }

// FailuresKey is the routing key of transport's failure messages:
// transport + ".failures".
func FailuresKey(transport string) string { return transport + ".failures" }

// DefaultEndpointName is the routing endpoint a message has when its
// routing_metadata names none (TransportMessage.DEFAULT_ENDPOINT_NAME).
const DefaultEndpointName = "default"

func routingEndpoint(md map[string]any) string {
	if name, ok := md["endpoint_name"].(string); ok {
		return name
	}
	return DefaultEndpointName
}

func setRoutingEndpoint(md *map[string]any, name string) {
	if name == "" {
		name = DefaultEndpointName
	}
	if *md == nil {
		*md = map[string]any{}
	}
	(*md)["endpoint_name"] = name
}
