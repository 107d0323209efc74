package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestSecretsAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	log := NewTo(&buf, "debug", "test")
	log.Info("hello", "password", "hunter2", "apiKey", "re_123", "Authorization", "Bearer abc", "email", "a@b.co")
	out := buf.String()
	for _, secret := range []string{"hunter2", "re_123", "Bearer abc"} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q in log: %s", secret, out)
		}
	}
	if !strings.Contains(out, "a@b.co") || !strings.Contains(out, `"service":"test"`) {
		t.Fatalf("log lost ordinary fields: %s", out)
	}
}
