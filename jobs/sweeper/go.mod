module github.com/cineflow/cineflow/jobs/sweeper

go 1.26

require (
	github.com/cineflow/cineflow/pkg v0.0.0
	github.com/cineflow/cineflow/services/notification v0.0.0
	github.com/cineflow/cineflow/pkg/devdb v0.0.0
)

replace (
	github.com/cineflow/cineflow/pkg => ../../pkg
	github.com/cineflow/cineflow/pkg/devdb => ../../pkg/devdb
	github.com/cineflow/cineflow/services/notification => ../../services/notification
)

require github.com/resend/resend-go/v2 v2.28.0
