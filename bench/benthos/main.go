// Command benthos is Benthos v4.27.0 with only the components the edge benchmark uses: the http_server
// input, the kafka_franz output and the pure processors. `make bench-edge` builds it
// (bench/gobuild.py) and runs it with bench/benthos/config.yaml.
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/kafka"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background())
}
