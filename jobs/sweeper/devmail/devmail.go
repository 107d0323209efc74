// Package devmail is the sweeper.Mailer used in development, when no Resend API key is set:
// it sends nothing, but logs every email and, optionally, writes it as a JSON file into an
// outbox directory.
//
// Like Resend it honours idempotency keys: sending the same key again returns the ids of the
// first send without logging or writing anything. Keys are remembered in memory and, when an
// outbox directory is set, as files under <outbox>/.keys so that they hold across processes.
// The same key with different emails is refused (Permanent), as Resend answers 409
// invalid_idempotent_request.
package devmail

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cineflow/cineflow/jobs/sweeper"
)

// LogMessage is the message of the log record of each email.
const LogMessage = "email (dev mailer, not sent)"

// keysDir is the directory, inside the outbox, holding one file per idempotency key.
const keysDir = ".keys"

// Mailer is the dev mailer. It is safe for concurrent use.
type Mailer struct {
	logger *slog.Logger
	outbox string
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]sent
}

// sent is what is remembered of an idempotency key.
type sent struct {
	Key         string   `json:"key"`
	Fingerprint string   `json:"fingerprint"`
	IDs         []string `json:"ids"`
}

// Message is the JSON written for each email.
type Message struct {
	MessageID      string    `json:"message_id"`
	TicketID       string    `json:"ticket_id"`
	From           string    `json:"from"`
	To             []string  `json:"to"`
	Subject        string    `json:"subject"`
	Text           string    `json:"text"`
	IdempotencyKey string    `json:"idempotency_key"`
	CreatedAt      time.Time `json:"created_at"`
}

var _ sweeper.Mailer = (*Mailer)(nil)

// New returns a dev mailer logging to logger (nil means slog.Default()) and writing emails
// into outboxDir, created if missing; "" writes no files.
func New(logger *slog.Logger, outboxDir string) *Mailer {
	if logger == nil {
		logger = slog.Default()
	}
	return &Mailer{logger: logger, outbox: outboxDir, now: time.Now, keys: map[string]sent{}}
}

// Send implements sweeper.Mailer.
func (m *Mailer) Send(ctx context.Context, idempotencyKey string, emails []sweeper.Email) ([]sweeper.Outcome, error) {
	if len(emails) == 0 || len(emails) > sweeper.MaxBatch {
		return nil, &sweeper.SendError{Kind: sweeper.Permanent,
			Message: fmt.Sprintf("a send carries 1 to %d emails, got %d", sweeper.MaxBatch, len(emails))}
	}
	if err := ctx.Err(); err != nil {
		return nil, &sweeper.SendError{Kind: sweeper.Transient, Message: err.Error()}
	}
	fp := fingerprint(emails)

	m.mu.Lock()
	defer m.mu.Unlock()

	if idempotencyKey != "" {
		prev, ok, err := m.lookup(idempotencyKey)
		if err != nil {
			return nil, &sweeper.SendError{Kind: sweeper.Transient, Message: err.Error()}
		}
		if ok {
			if prev.Fingerprint != fp || len(prev.IDs) != len(emails) {
				return nil, &sweeper.SendError{Kind: sweeper.Permanent, Status: 409, Name: "invalid_idempotent_request",
					Message: "same idempotency key used with different emails"}
			}
			return outcomes(prev.IDs), nil
		}
	}

	if m.outbox != "" {
		if err := os.MkdirAll(m.outbox, 0o755); err != nil {
			return nil, &sweeper.SendError{Kind: sweeper.Transient, Message: "creating outbox: " + err.Error()}
		}
	}
	now := m.now().UTC()
	ids := make([]string, len(emails))
	for i, e := range emails {
		ids[i] = "dev-" + randomHex(12)
		msg := Message{
			MessageID: ids[i], TicketID: e.TicketID, From: e.From, To: e.To, Subject: e.Subject,
			Text: e.Text, IdempotencyKey: idempotencyKey, CreatedAt: now,
		}
		if m.outbox != "" {
			if err := m.write(msg); err != nil {
				return nil, &sweeper.SendError{Kind: sweeper.Transient, Message: "writing outbox: " + err.Error()}
			}
		}
		m.logger.InfoContext(ctx, LogMessage,
			slog.String("ticket_id", e.TicketID),
			slog.Any("to", e.To),
			slog.String("subject", e.Subject),
			slog.String("text", truncate(e.Text, 200)),
			slog.String("message_id", ids[i]),
			slog.String("idempotency_key", idempotencyKey),
		)
	}

	if idempotencyKey != "" {
		s := sent{Key: idempotencyKey, Fingerprint: fp, IDs: ids}
		m.keys[idempotencyKey] = s
		if m.outbox != "" {
			if err := m.storeKey(s); err != nil {
				// The emails are written; only cross-process idempotency is lost.
				m.logger.WarnContext(ctx, "dev mailer: cannot store idempotency key", slog.String("err", err.Error()))
			}
		}
	}
	return outcomes(ids), nil
}

// lookup finds a key in memory, then in the outbox.
func (m *Mailer) lookup(key string) (sent, bool, error) {
	if s, ok := m.keys[key]; ok {
		return s, true, nil
	}
	if m.outbox == "" {
		return sent{}, false, nil
	}
	b, err := os.ReadFile(m.keyPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return sent{}, false, nil
	}
	if err != nil {
		return sent{}, false, fmt.Errorf("reading idempotency key: %w", err)
	}
	var s sent
	if err := json.Unmarshal(b, &s); err != nil || s.Key != key {
		return sent{}, false, nil // unreadable: treat as unknown
	}
	m.keys[key] = s
	return s, true, nil
}

func (m *Mailer) keyPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(m.outbox, keysDir, hex.EncodeToString(sum[:16])+".json")
}

func (m *Mailer) storeKey(s sent) error {
	if err := os.MkdirAll(filepath.Join(m.outbox, keysDir), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeAtomic(m.keyPath(s.Key), b)
}

// write writes one email as <time>_<ticket>_<message id>.json.
func (m *Mailer) write(msg Message) error {
	b, err := json.MarshalIndent(msg, "", "  ")
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s_%s_%s.json", msg.CreatedAt.Format("20060102T150405.000000000Z"), safeName(msg.TicketID), msg.MessageID)
	return writeAtomic(filepath.Join(m.outbox, name), append(b, '\n'))
}

// writeAtomic writes through a temporary file and a rename, so readers never see half a file.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func outcomes(ids []string) []sweeper.Outcome {
	out := make([]sweeper.Outcome, len(ids))
	for i, id := range ids {
		out[i].MessageID = id
	}
	return out
}

func fingerprint(emails []sweeper.Email) string {
	b, _ := json.Marshal(emails)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// safeName keeps letters, digits, '-' and '_' of s (at most 64), for a file name.
func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "no-ticket"
	}
	return b.String()
}

// truncate returns the first n characters of s (not bytes, to keep UTF-8 whole).
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for i = range s {
		if count == n {
			break
		}
		count++
	}
	return s[:i]
}
