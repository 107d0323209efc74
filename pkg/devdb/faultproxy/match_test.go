package faultproxy

import "testing"

func TestCollectionPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern, coll string
		want          bool
	}{{"", "any", true}, {"holds", "holds", true}, {"holds", "holds_2", false},
		{"intents_*", "intents_1_2", true}, {"intents_*", "intents", false}, {"*", "x", true}} {
		if got := collMatches(c.pattern, c.coll); got != c.want {
			t.Errorf("%q on %q: %v", c.pattern, c.coll, got)
		}
	}
}
