module github.com/cineflow/cineflow/jobs/sweeper

go 1.26.0

require (
	github.com/cineflow/cineflow/pkg v0.0.0
	github.com/cineflow/cineflow/pkg/devdb v0.0.0
	github.com/cineflow/cineflow/services/notification v0.0.0
)

replace (
	github.com/cineflow/cineflow/pkg => ../../pkg
	github.com/cineflow/cineflow/pkg/devdb => ../../pkg/devdb
	github.com/cineflow/cineflow/services/notification => ../../services/notification
)

require github.com/resend/resend-go/v2 v2.28.0

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	go.mongodb.org/mongo-driver/v2 v2.10.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/sdk v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
