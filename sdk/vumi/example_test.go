package vumi_test

import (
	"encoding/json"
	"fmt"

	"github.com/dynworkers/dynworkers/sdk/vumi"
)

func Example() {
	body := []byte(`{
		"message_version": "20110921", "message_type": "user_message",
		"message_id": "0123456789abcdef0123456789abcdef",
		"timestamp": "2026-11-27 01:02:03.000456",
		"routing_metadata": {}, "helper_metadata": {},
		"in_reply_to": null, "provider": null, "group": null,
		"session_event": "new", "content": null,
		"to_addr": "*120*1234#", "from_addr": "+27831234567",
		"to_addr_type": null, "from_addr_type": "msisdn",
		"transport_name": "ussd_transport", "transport_type": "ussd",
		"transport_metadata": {"session_id": "abc"}
	}`)
	msg, err := vumi.ParseUserMessage(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	reply := msg.Reply("Welcome! 1. Balance 2. Quit", true)
	out, err := json.Marshal(reply)
	if err != nil {
		fmt.Println(err)
		return
	}
	var fields map[string]any
	_ = json.Unmarshal(out, &fields)
	fmt.Println("routing key:", vumi.OutboundKey(reply.TransportName))
	for _, k := range []string{"to_addr", "from_addr", "in_reply_to", "session_event", "content", "transport_metadata", "routing_metadata"} {
		fmt.Printf("%s: %v\n", k, fields[k])
	}

	_, err = vumi.ParseUserMessage([]byte(`{"message_version": "20110921"}`))
	fmt.Println(err)
	// Output:
	// routing key: ussd_transport.outbound
	// to_addr: +27831234567
	// from_addr: *120*1234#
	// in_reply_to: 0123456789abcdef0123456789abcdef
	// session_event: <nil>
	// content: Welcome! 1. Balance 2. Quit
	// transport_metadata: map[session_id:abc]
	// routing_metadata: map[endpoint_name:default]
	// vumi: missing field "message_type"
}
