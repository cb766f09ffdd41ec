//go:build tools

// Package consulbuild only records Consul's main package as a dependency of this module, so
// that `go mod tidy` keeps go.sum complete for `go build github.com/hashicorp/consul`.
package consulbuild

import _ "github.com/hashicorp/consul"
