package occupancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsStore keeps the entries in a JetStream key-value bucket,
// "<stream>_occupancy": entries under "u." and "c.", due checks under
// "p." (their value the due time, Unix milliseconds). Every node watches
// the due checks, so that whichever leads finds them all.
type natsStore struct {
	nc     *nats.Conn
	kvp    atomic.Pointer[jetstream.KeyValue]
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	checks map[string]dueCheck // "p." stripped
}

// dueKey is the key of an entry's due check.
const duePrefix = "p."

func newNATSStore(url, stream string, replicas int, log *slog.Logger) (*natsStore, error) {
	nc, err := nats.Connect(url, nats.Name("pushgate occupancy"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("occupancy: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("occupancy: %w", err)
	}
	s := &natsStore{nc: nc, log: log, checks: map[string]dueCheck{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.open(ctx, js, jetstream.KeyValueConfig{
		Bucket:      stream + "_occupancy",
		Description: "pushgate: which nodes hold each online user and occupied channel",
		Storage:     jetstream.MemoryStorage,
		Replicas:    replicas,
	})
	return s, nil
}

// errUnavailable is every call's error until the bucket is open.
var errUnavailable = errors.New("occupancy: the NATS bucket is not open yet")

// open creates or opens the bucket, retrying every second (NATS may come
// up after the gateway), then watches the due checks.
func (s *natsStore) open(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) {
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := js.CreateOrUpdateKeyValue(cctx, cfg)
		ccancel()
		if err == nil {
			s.kvp.Store(&kv)
			break
		}
		s.log.Warn("occupancy: no bucket yet, retrying", "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			close(s.done)
			return
		}
	}
	s.watchDue(ctx)
}

// kv is the bucket, nil until open.
func (s *natsStore) kv() jetstream.KeyValue {
	if p := s.kvp.Load(); p != nil {
		return *p
	}
	return nil
}

// watchDue mirrors the due checks, re-watching after a failure.
func (s *natsStore) watchDue(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		w, err := s.kv().Watch(ctx, duePrefix+">")
		if err != nil {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		fresh := map[string]dueCheck{}
		initial := true
		for e := range w.Updates() {
			if e == nil { // the initial values are in
				s.mu.Lock()
				s.checks, initial = fresh, false
				s.mu.Unlock()
				continue
			}
			key := strings.TrimPrefix(e.Key(), duePrefix)
			ms, _ := strconv.ParseInt(string(e.Value()), 10, 64)
			s.mu.Lock()
			m := s.checks
			if initial {
				m = fresh
			}
			if e.Operation() == jetstream.KeyValuePut {
				m[key] = dueCheck{time.UnixMilli(ms), e.Revision()}
			} else {
				delete(m, key)
			}
			s.mu.Unlock()
		}
		_ = w.Stop()
	}
}

func (s *natsStore) get(ctx context.Context, key string) ([]byte, uint64, error) {
	kv := s.kv()
	if kv == nil {
		return nil, 0, errUnavailable
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

func (s *natsStore) create(ctx context.Context, key string, val []byte) error {
	kv := s.kv()
	if kv == nil {
		return errUnavailable
	}
	_, err := kv.Create(ctx, key, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return errExists
	}
	return err
}

func (s *natsStore) update(ctx context.Context, key string, val []byte, rev uint64) error {
	kv := s.kv()
	if kv == nil {
		return errUnavailable
	}
	_, err := kv.Update(ctx, key, val, rev)
	if isConflict(err) {
		return errConflict
	}
	return err
}

func (s *natsStore) remove(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	kv := s.kv()
	if kv == nil {
		return errUnavailable
	}
	err := kv.Delete(ctx, key, opts...)
	if isConflict(err) {
		return errConflict
	}
	return err
}

// isConflict tells a failed compare-and-set: the server's "wrong last
// sequence" error.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

func (s *natsStore) scan(ctx context.Context, prefix string, fn func(string, []byte, uint64)) error {
	kv := s.kv()
	if kv == nil {
		return errUnavailable
	}
	w, err := kv.Watch(ctx, prefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("occupancy: scan watch ended")
			}
			if e == nil {
				return nil
			}
			fn(e.Key(), e.Value(), e.Revision())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *natsStore) setDue(ctx context.Context, key string, due time.Time) error {
	kv := s.kv()
	if kv == nil {
		return errUnavailable
	}
	_, err := kv.Put(ctx, duePrefix+key, strconv.AppendInt(nil, due.UnixMilli(), 10))
	return err
}

func (s *natsStore) clearDue(ctx context.Context, key string, rev uint64) error {
	if err := s.remove(ctx, duePrefix+key, rev); err != nil && !errors.Is(err, errConflict) {
		return err
	}
	return nil
}

func (s *natsStore) due() map[string]dueCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.checks)
}

// purgeDeletes drops the delete markers older than a minute, which would
// otherwise keep one message for every user and channel ever seen.
func (s *natsStore) purgeDeletes(ctx context.Context) error {
	kv := s.kv()
	if kv == nil {
		return errUnavailable
	}
	return kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(time.Minute))
}

func (s *natsStore) close() {
	s.cancel()
	<-s.done
	s.nc.Close()
}
