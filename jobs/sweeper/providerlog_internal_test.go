package sweeper

import "testing"

func TestRedactAddresses(t *testing.T) {
	emails := []Email{{To: []string{"Fan.One@Example.com"}}, {To: []string{"odd name@example.com"}}}
	for msg, want := range map[string]string{
		"The `to` address fan.one@example.com is not allowed":        "The `to` address [address] is not allowed",
		"FAN.ONE@EXAMPLE.COM refused":                                "[address] refused",
		"Invalid `to` field: <someone+tag@mail.example.org>.":        "Invalid `to` field: <[address]>.",
		"bad recipient odd name@example.com":                         "bad recipient [address]",
		"An unexpected error occurred (injected before processing).": "An unexpected error occurred (injected before processing).",
	} {
		if got := redactAddresses(msg, emails); got != want {
			t.Errorf("redactAddresses(%q) = %q, want %q", msg, got, want)
		}
	}
}
