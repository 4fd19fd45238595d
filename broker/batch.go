package broker

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgate/pushgate/broadcast"
)

// A stream message carries one publication, or several consecutive ones
// of its channel (a batch: the publications that waited while the one
// before went out). A single publication is the message's data, with its
// offset in Pushgate-Offset and its message ID in Nats-Msg-Id, as before
// batches existed. A batch has Pushgate-Count ≥ 2, Pushgate-Offset the
// first one's offset (the others follow it by one each), the first one's
// ID as its Nats-Msg-Id, and, in its data, each publication's ID and data,
// each a uvarint length and the bytes.
const hdrCount = "Pushgate-Count"

// entry is one publication of a stream message.
type entry struct {
	id   string // the publish's message ID, which its waiter is found by
	data []byte
}

// appendBatch appends the data of a batch of reqs to dst.
func appendBatch(dst []byte, reqs []*request) []byte {
	for _, r := range reqs {
		dst = binary.AppendUvarint(dst, uint64(len(r.id)))
		dst = append(dst, r.id...)
		dst = binary.AppendUvarint(dst, uint64(len(r.data)))
		dst = append(dst, r.data...)
	}
	return dst
}

// batchSize is the size appendBatch gives r in a batch.
func batchSize(r *request) int {
	return uvarintLen(len(r.id)) + len(r.id) + uvarintLen(len(r.data)) + len(r.data)
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

var errBatch = errors.New("malformed batch")

// entries reads the publications of a stream message.
func entries(h nats.Header, data []byte) ([]entry, error) {
	count := h.Get(hdrCount)
	if count == "" {
		return []entry{{id: h.Get(jetstream.MsgIDHeader), data: data}}, nil
	}
	n, err := strconv.Atoi(count)
	// Each entry takes at least two bytes: n beyond that is a lie that
	// would size the slice below.
	if err != nil || n < 2 || n > len(data)/2 {
		return nil, errBatch
	}
	es := make([]entry, 0, n)
	for range n {
		id, rest, ok := cutField(data)
		if !ok {
			return nil, errBatch
		}
		d, rest, ok := cutField(rest)
		if !ok {
			return nil, errBatch
		}
		es = append(es, entry{id: string(id), data: d})
		data = rest
	}
	if len(data) != 0 {
		return nil, errBatch
	}
	return es, nil
}

// cutField cuts a uvarint length and that many bytes from the front of b.
func cutField(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	b = b[k:]
	return b[:n:n], b[n:], true
}

// stored is what a stream message of pushgate's holds: consecutive
// publications of its channel from first, in epoch.
type stored struct {
	first   uint64
	epoch   string
	entries []entry
}

// decode reads a stream message; ok is false if it is not a pushgate
// publication or batch (a message written to the stream by hand). The
// nodes reading the stream and the node numbering the channel's next
// publication both read messages with it, so they agree on what a message
// holds.
func decode(h nats.Header, data []byte) (p stored, ok bool) {
	first, err := strconv.ParseUint(h.Get(hdrOffset), 10, 64)
	if err != nil || first == 0 || h.Get(hdrEpoch) == "" {
		return stored{}, false
	}
	es, err := entries(h, data)
	if err != nil {
		return stored{}, false
	}
	for _, e := range es {
		if !broadcast.ValidData(e.data) {
			return stored{}, false
		}
	}
	return stored{first: first, epoch: h.Get(hdrEpoch), entries: es}, true
}
