package vumi

import (
	"os"
	"testing"
)

// The benchmarks of the echo path: decode a user message, build the reply,
// encode it. "sms" is a plain inbound SMS (empty metadata), "metadata" one
// with routing, helper and transport metadata and unknown keys.
var benchBodies = []struct{ name, path string }{
	{"sms", "testdata/user_message_inbound_sms.json"},
	{"metadata", "testdata/user_message_extra_fields.json"},
}

func benchBody(b *testing.B, path string) []byte {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkDecode(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			data := benchBody(b, bb.path)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseUserMessage(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			m, err := ParseUserMessage(benchBody(b, bb.path))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.MarshalJSON(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEchoReply is what the echo plugin does with a message: decode,
// reply with its content, encode the reply.
func BenchmarkEchoReply(b *testing.B) {
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			data := benchBody(b, bb.path)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := ParseUserMessage(data)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Reply("hello", true).MarshalJSON(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
