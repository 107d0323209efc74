package httpapi

import "github.com/gofiber/fiber/v2"

// registerCatalogue mounts the movie, theatre and show routes. (Being built.)
func (a *API) registerCatalogue(g fiber.Router) {}
