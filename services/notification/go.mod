module github.com/cineflow/cineflow/services/notification

go 1.26

require (
	github.com/cineflow/cineflow/pkg v0.0.0
	github.com/cineflow/cineflow/pkg/devdb v0.0.0
	github.com/getkin/kin-openapi v0.153.0
)

replace (
	github.com/cineflow/cineflow/pkg => ../../pkg
	github.com/cineflow/cineflow/pkg/devdb => ../../pkg/devdb
)
