package upstream

import "sync"

// copyBufferBytes is what httputil.ReverseProxy allocates for each response it copies when it
// has no BufferPool: 32 KiB per request, most of what a proxied request allocates, and so most
// of the garbage collector's work under load.
const copyBufferBytes = 32 << 10

// Buffers is an httputil.BufferPool: the copy buffers are reused across requests.
type Buffers struct{ pool sync.Pool }

func (b *Buffers) Get() []byte {
	if buffer, ok := b.pool.Get().(*[]byte); ok {
		return *buffer
	}
	return make([]byte, copyBufferBytes)
}

func (b *Buffers) Put(buffer []byte) {
	if cap(buffer) != copyBufferBytes {
		return
	}
	buffer = buffer[:copyBufferBytes]
	b.pool.Put(&buffer)
}
