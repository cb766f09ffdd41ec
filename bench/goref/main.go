// Command goref is the benchmark peer of geo-edge: the original design of an ingestion edge in Go.
//
// POST /post takes one JSON object and answers only after Kafka acknowledged it: one sarama
// SyncProducer round trip per request, acks=1 (WaitForLocal), snappy. 200 on the ack, 400 when the
// body is not a JSON object, 503 when Kafka failed. /metrics serves Prometheus metrics, /status
// answers 200. With --tls-cert/--tls-key it serves HTTPS through the standard library (TLS >= 1.2,
// so a TLS 1.3 client negotiates 1.3). `make bench-edge` builds and runs it (bench/gobuild.py).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"crypto/tls"
	"github.com/Shopify/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const maxBody = 1 << 20

var (
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goref_requests_total", Help: "Requests to /post by status code.",
	}, []string{"code"})
	produceSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "goref_kafka_produce_duration_seconds", Help: "Kafka round trip per event.",
	})
)

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return fallback
}

type handler struct {
	producer sarama.SyncProducer
	topic    string
	log      *slog.Logger
}

func (h *handler) reply(w http.ResponseWriter, code int, body string) {
	requests.WithLabelValues(http.StatusText(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func (h *handler) post(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.reply(w, http.StatusMethodNotAllowed, `{"error":"method_not_allowed"}`)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.reply(w, http.StatusRequestEntityTooLarge, `{"error":"body_too_large"}`)
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		h.reply(w, http.StatusBadRequest, `{"error":"not_a_json_object"}`)
		return
	}
	start := time.Now()
	_, _, err = h.producer.SendMessage(&sarama.ProducerMessage{Topic: h.topic, Value: sarama.ByteEncoder(body)})
	produceSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		h.log.Warn("produce failed", "error", err.Error())
		h.reply(w, http.StatusServiceUnavailable, `{"error":"kafka_unavailable"}`)
		return
	}
	h.reply(w, http.StatusOK, `{"status":"ok"}`)
}

func main() {
	listen := flag.String("listen", env("GOREF_LISTEN", "127.0.0.1:8080"), "address to serve on (env GOREF_LISTEN)")
	brokers := flag.String("brokers", env("GOREF_BROKERS", "127.0.0.1:9092"), "Kafka bootstrap servers, comma-separated (env GOREF_BROKERS)")
	topic := flag.String("topic", env("GOREF_TOPIC", "events"), "Kafka topic (env GOREF_TOPIC)")
	cert := flag.String("tls-cert", env("GOREF_TLS_CERT", ""), "PEM certificate chain file: serve HTTPS (env GOREF_TLS_CERT)")
	key := flag.String("tls-key", env("GOREF_TLS_KEY", ""), "PEM private key file (env GOREF_TLS_KEY)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Compression = sarama.CompressionSnappy
	cfg.Producer.Return.Successes = true
	producer, err := sarama.NewSyncProducer(strings.Split(*brokers, ","), cfg)
	if err != nil {
		log.Error("kafka producer", "error", err.Error())
		os.Exit(1)
	}
	h := &handler{producer: producer, topic: *topic, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("/post", h.post)
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"status":"ok"}`) })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}

	done := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		close(done)
	}()
	log.Info("serving", "listen", *listen, "tls", *cert != "", "topic", *topic)
	if *cert != "" {
		err = srv.ListenAndServeTLS(*cert, *key)
	} else {
		err = srv.ListenAndServe()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "error", err.Error())
		os.Exit(1)
	}
	<-done
	_ = producer.Close()
}
