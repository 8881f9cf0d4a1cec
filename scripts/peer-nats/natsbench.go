// natsbench: the Tidemark bench workloads against NATS JetStream, printing the same JSON
// fields as `tidemark bench --format json`.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

type summary struct {
	Records       int64   `json:"records"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	P50           float64 `json:"p50_ms"`
	P99           float64 `json:"p99_ms"`
	P999          float64 `json:"p999_ms"`
	Max           float64 `json:"max_ms"`
	MaxGap        float64 `json:"max_ack_gap_ms"`
	Errors        int64   `json:"errors"`
}

type stats struct {
	mu      sync.Mutex
	lat     []time.Duration
	start   time.Time
	last    time.Time
	maxGap  time.Duration
	errors  int64
	records int64
}

func (s *stats) record(d time.Duration, n int64) {
	now := time.Now()
	s.mu.Lock()
	if d >= 0 {
		s.lat = append(s.lat, d)
	}
	prev := s.last
	if prev.IsZero() {
		prev = s.start
	}
	if g := now.Sub(prev); g > s.maxGap {
		s.maxGap = g
	}
	s.last = now
	s.records += n
	s.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *stats) print(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sort.Slice(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] })
	q := func(p float64) float64 {
		if len(s.lat) == 0 {
			return 0
		}
		i := int(p * float64(len(s.lat)))
		if i >= len(s.lat) {
			i = len(s.lat) - 1
		}
		return ms(s.lat[i])
	}
	secs := s.last.Sub(s.start).Seconds()
	out := summary{Records: s.records, Seconds: secs, Errors: s.errors, P50: q(0.5), P99: q(0.99), P999: q(0.999), MaxGap: ms(s.maxGap)}
	if len(s.lat) > 0 {
		out.Max = ms(s.lat[len(s.lat)-1])
	}
	if secs > 0 {
		out.RecordsPerSec = float64(s.records) / secs
		out.MBPerSec = out.RecordsPerSec * float64(size) / 1e6
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func stream(js nats.JetStreamContext, name, subj string) {
	_ = js.DeleteStream(name)
	_, err := js.AddStream(&nats.StreamConfig{Name: name, Subjects: []string{subj}, Replicas: 3, Storage: nats.FileStorage})
	must(err, "creating stream "+name)
}

type pending struct {
	f  nats.PubAckFuture
	at time.Time
}

// publish sends for `dur` (paced at `rate`/s when > 0) round-robin over `subjects`, with
// at most `inflight` unacknowledged; acks are collected in send order.
func publish(js nats.JetStreamContext, subjects []string, size int, dur time.Duration, rate float64, count int64, st *stats, stamp bool) {
	acks := make(chan pending, 1<<16)
	done := make(chan struct{})
	go func() {
		for p := range acks {
			select {
			case <-p.f.Ok():
				st.record(time.Since(p.at), 1)
			case <-p.f.Err():
				st.mu.Lock()
				st.errors++
				st.mu.Unlock()
			case <-time.After(10*time.Second - time.Since(p.at)):
				// nats.go 1.22 never times out an async publish whose ack is lost.
				st.mu.Lock()
				st.errors++
				st.mu.Unlock()
			}
		}
		close(done)
	}()
	start := time.Now()
	deadline := start.Add(dur)
	var sent int64
	for {
		now := time.Now()
		if (dur > 0 && now.After(deadline)) || (count > 0 && sent >= count) {
			break
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / rate * 1e9))
			if due.After(now) {
				time.Sleep(due.Sub(now))
				continue
			}
		}
		payload := make([]byte, size)
		at := time.Now()
		if stamp {
			binary.LittleEndian.PutUint64(payload, uint64(at.UnixNano()))
		}
		f, err := js.PublishAsync(subjects[sent%int64(len(subjects))], payload)
		if err != nil {
			st.mu.Lock()
			st.errors++
			st.mu.Unlock()
			continue
		}
		acks <- pending{f, at}
		sent++
	}
	close(acks)
	<-done
}

func main() {
	mode := flag.String("mode", "produce", "produce | consume | e2e")
	url := flag.String("url", "nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224", "servers")
	dur := flag.Duration("duration", 10*time.Second, "how long to send (produce, e2e) or at most read (consume)")
	rate := flag.Float64("rate", 0, "messages per second over all streams (0: as fast as acknowledged)")
	inflight := flag.Int("inflight", 1024, "unacknowledged async publishes at most")
	streams := flag.Int("streams", 3, "streams to publish to (produce)")
	size := flag.Int("size", 1024, "payload bytes")
	prefill := flag.Int64("prefill", 200000, "messages written before consuming (consume)")
	consumers := flag.Int("consumers", 4, "pull workers on one durable consumer (consume)")
	flag.Parse()

	nc, err := nats.Connect(*url)
	must(err, "connect")
	defer nc.Close()
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(*inflight))
	must(err, "jetstream")
	st := &stats{}

	switch *mode {
	case "produce":
		var subjects []string
		for i := 0; i < *streams; i++ {
			stream(js, fmt.Sprintf("P%d", i), fmt.Sprintf("p%d.>", i))
			subjects = append(subjects, fmt.Sprintf("p%d.x", i))
		}
		st.start = time.Now()
		publish(js, subjects, *size, *dur, *rate, 0, st, false)
	case "consume":
		stream(js, "C", "c.>")
		fill := &stats{start: time.Now()}
		publish(js, []string{"c.x"}, *size, 0, 0, *prefill, fill, false)
		fmt.Fprintf(os.Stderr, "prefilled %d (%d errors)\n", fill.records, fill.errors)
		_, err := js.AddConsumer("C", &nats.ConsumerConfig{Durable: "w", AckPolicy: nats.AckExplicitPolicy, MaxAckPending: 65536})
		must(err, "consumer")
		var got int64
		st.start = time.Now()
		deadline := st.start.Add(*dur)
		var wg sync.WaitGroup
		for i := 0; i < *consumers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sub, err := js.PullSubscribe("c.>", "w", nats.Bind("C", "w"))
				must(err, "pull subscribe")
				for atomic.LoadInt64(&got) < fill.records && time.Now().Before(deadline) {
					t := time.Now()
					msgs, err := sub.Fetch(256, nats.MaxWait(time.Second))
					if err != nil && err != nats.ErrTimeout {
						st.mu.Lock()
						st.errors++
						st.mu.Unlock()
						continue
					}
					for _, m := range msgs {
						_ = m.Ack()
					}
					if len(msgs) > 0 {
						atomic.AddInt64(&got, int64(len(msgs)))
						st.record(time.Since(t), int64(len(msgs)))
					}
				}
			}()
		}
		wg.Wait()
	case "e2e":
		stream(js, "E", "e.>")
		st.start = time.Now()
		_, err := js.Subscribe("e.>", func(m *nats.Msg) {
			sent := time.Unix(0, int64(binary.LittleEndian.Uint64(m.Data)))
			st.record(time.Since(sent), 1)
		}, nats.DeliverNew(), nats.AckNone(), nats.BindStream("E"))
		must(err, "subscribe")
		pubst := &stats{start: time.Now()}
		publish(js, []string{"e.x"}, *size, *dur, *rate, 0, pubst, true)
		time.Sleep(2 * time.Second)
		st.errors += pubst.records - st.records + pubst.errors
	default:
		must(fmt.Errorf("unknown mode %q", *mode), "usage")
	}
	st.print(*size)
}
