package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 2 * time.Minute, "5s": 5 * time.Second, "1h30m": 90 * time.Minute} {
		if got, err := parseInterval(in); err != nil || got != want {
			t.Errorf("parseInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"2", "abc", "0s", "-1m"} {
		if _, err := parseInterval(in); err == nil || !strings.Contains(err.Error(), "SWEEP_INTERVAL") {
			t.Errorf("parseInterval(%q): want an error naming SWEEP_INTERVAL, got %v", in, err)
		}
	}
}

func lookupOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadSettingsDefaults(t *testing.T) {
	s, err := loadSettings(lookupOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := settings{Token: devToken, DevToken: true, NotificationPort: 3001, Interval: 2 * time.Minute,
		OutboxDir: ".outbox", JWTSecret: devJWTSecret, AdminEmail: devAdminEmail, AdminPassword: devAdminPass, DevAdmin: true,
		NotificationURL: "http://127.0.0.1:3001/notiservice/api/v1/notifications", Projection: "false", AppEnv: "development"}
	if s != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", s, want)
	}
}

func TestLoadSettingsFromEnv(t *testing.T) {
	s, err := loadSettings(lookupOf(map[string]string{"DB_URL": "mongodb://db:27017/", "NOTIFICATION_API_TOKEN": "secret",
		"PORT": "4001", "SWEEP_INTERVAL": "5s", "OUTBOX_DIR": "/tmp/out", "RESEND_API_KEY": "re_x"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.DBURL != "mongodb://db:27017/" || s.Token != "secret" || s.DevToken || s.NotificationPort != 4001 ||
		s.Interval != 5*time.Second || s.OutboxDir != "/tmp/out" || !s.Resend ||
		s.NotificationURL != "http://127.0.0.1:4001/notiservice/api/v1/notifications" {
		t.Errorf("got %+v", s)
	}
	for _, bad := range []map[string]string{{"PORT": "x"}, {"PORT": "70000"}, {"SWEEP_INTERVAL": "2"}} {
		if _, err := loadSettings(lookupOf(bad)); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

func TestServicesEnv(t *testing.T) {
	s, _ := loadSettings(lookupOf(map[string]string{"DB_URL": "mongodb://x/"}))
	svcs := services(s, "./bin/notification", "./bin/core")
	if len(svcs) != 2 || svcs[0].Name != "notification" || svcs[0].Optional || svcs[1].Name != "core" || !svcs[1].Optional {
		t.Fatalf("services = %+v", svcs)
	}
	n := svcs[0].Env
	if n["DB_URL"] != "mongodb://x/" || n["PORT"] != "3001" || n["NOTIFICATION_API_TOKEN"] != devToken {
		t.Errorf("notification env = %v", n)
	}
	if c := svcs[1].Env; c["PORT"] != "3000" || c["JWT_SECRET"] == "" || c["NOTIFICATION_API_TOKEN"] != devToken {
		t.Errorf("core env = %v", c)
	}
	if e := sweeperEnv(s); e["DB_URL"] != "mongodb://x/" || e["OUTBOX_DIR"] != ".outbox" {
		t.Errorf("sweeper env = %v", e)
	}
	// The binaries default to production: `make run` runs every child in development mode,
	// unless the user chose APP_ENV (in the environment or .env).
	for _, c := range []struct{ set, want string }{{"", "development"}, {"production", "production"}} {
		s, _ := loadSettings(lookupOf(map[string]string{"APP_ENV": c.set}))
		envs := []map[string]string{sweeperEnv(s)}
		for _, svc := range services(s, "n", "c") {
			envs = append(envs, svc.Env)
		}
		for i, e := range envs {
			if e["APP_ENV"] != c.want {
				t.Errorf("APP_ENV=%q: child %d gets APP_ENV=%q, want %q", c.set, i, e["APP_ENV"], c.want)
			}
		}
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "PORT=9", "RESEND_API_KEY=re_1", "DB_URL="},
		map[string]string{"PORT": "3001", "DB_URL": "mongodb://h/"})
	want := []string{"PATH=/bin", "RESEND_API_KEY=re_1", "DB_URL=mongodb://h/", "PORT=3001"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}

func TestLineWriterPrefixesWholeLines(t *testing.T) {
	var buf bytes.Buffer
	w := newOutput(&buf).writer("sweeper")
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\nthree"))
	w.flush()
	want := "sweeper      | one\nsweeper      | two\nsweeper      | three\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}
