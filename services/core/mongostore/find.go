package mongostore

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// findAll runs a find, decodes every document as D and converts each with conv. what names
// the failure ("could not <what>"), without the cause, which stays for the logs.
func findAll[D, T any](ctx context.Context, c *mongo.Collection, filter any, opts *options.FindOptionsBuilder,
	what string, conv func(*D) T) ([]T, error) {
	var optList []options.Lister[options.FindOptions]
	if opts != nil {
		optList = append(optList, opts)
	}
	cur, err := c.Find(ctx, filter, optList...)
	if err != nil {
		return nil, dbError(err, "could not "+what)
	}
	var docs []D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbError(err, "could not "+what)
	}
	out := make([]T, len(docs))
	for i := range docs {
		out[i] = conv(&docs[i])
	}
	return out, nil
}
