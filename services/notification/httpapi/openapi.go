package httpapi

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// OpenAPIPath is where the OpenAPI document is served (no token needed).
const OpenAPIPath = "/openapi.json"

// openAPIDoc is the OpenAPI 3 description of every route of the notification service, served as it
// is. openapi_test.go keeps it in step with the mounted routes and the domain types.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns a copy of the OpenAPI document of the notification service.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

// MountOpenAPI serves the OpenAPI document at GET OpenAPIPath: raw JSON
// (application/json), not wrapped in the envelope.
func MountOpenAPI(app *fiber.App) {
	app.Get(OpenAPIPath, func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		return c.Send(openAPIDoc)
	})
}
