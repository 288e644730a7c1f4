package upstream

import "testing"

func TestBuffersHandBackWholeCopyBuffersAndDropOthers(t *testing.T) {
	var buffers Buffers
	first := buffers.Get()
	if len(first) != copyBufferBytes {
		t.Fatalf("a buffer of %d bytes, want %d", len(first), copyBufferBytes)
	}
	buffers.Put(first[:10]) // a slice of it: its capacity is whole, its length comes back whole
	if again := buffers.Get(); len(again) != copyBufferBytes {
		t.Fatalf("a reused buffer of %d bytes, want %d", len(again), copyBufferBytes)
	}
	buffers.Put(make([]byte, 5)) // not ours: never handed out
	if got := buffers.Get(); len(got) != copyBufferBytes {
		t.Fatalf("a buffer of %d bytes after a foreign one, want %d", len(got), copyBufferBytes)
	}
}
