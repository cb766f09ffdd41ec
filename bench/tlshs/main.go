// tlshs: a TLS server that completes handshakes and discards what follows, with Go's
// standard library (crypto/tls). Used by bench/tls_handshake.py to compare the server CPU
// per handshake of TLS libraries. Usage: tlshs <port> <cert.pem> <key.pem>
package main

import (
	"crypto/tls"
	"io"
	"os"
)

func main() {
	cert, err := tls.LoadX509KeyPair(os.Args[2], os.Args[3])
	if err != nil {
		panic(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:"+os.Args[1], &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}
